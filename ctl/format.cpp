#include "format.hpp"

#include <pwd.h>
#include <time.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <vector>

#include <google/protobuf/util/json_util.h>

#include "extmem/units.hpp"

namespace extmem::ctl {

namespace {

struct Column {
  const char* header;
  bool right_aligned;
};

// Columns two spaces apart, each as wide as its widest cell; no trailing blanks.
std::string render_table(const std::vector<Column>& columns,
                         const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const Column& c : columns) widths.push_back(std::string_view(c.header).size());
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  auto add_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t i = 0; i < cells.size(); ++i) {
      const std::string pad(widths[i] - cells[i].size(), ' ');
      if (i > 0) line += "  ";
      line += columns[i].right_aligned ? pad + cells[i] : cells[i] + pad;
    }
    line.erase(line.find_last_not_of(' ') + 1);
    out += line + "\n";
  };
  std::vector<std::string> headers;
  for (const Column& c : columns) headers.emplace_back(c.header);
  add_row(headers);
  for (const auto& row : rows) add_row(row);
  return out;
}

std::string rate_text(double per_second) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%.0f", per_second);
  return buf;
}

// "key            value" lines; keys are at most 13 characters.
void add_field(std::string* out, const std::string& key, const std::string& value,
               size_t key_width = 13) {
  *out += key + std::string(key_width - key.size() + 2, ' ') + value + "\n";
}

// Prefetch accuracy: the share of read-ahead markers the application touched.
std::string prefetch_text(const v1::Counters& c) {
  if (c.prefetch_markers() == 0) return "no read-ahead markers placed";
  return "accuracy " + std::to_string(c.prefetch_markers_used() * 100 / c.prefetch_markers()) +
         "% (" + std::to_string(c.prefetch_markers_used()) + " of " +
         std::to_string(c.prefetch_markers()) + " read-ahead markers used, " +
         std::to_string(c.prefetch_markers_unused()) + " evicted or freed unused)";
}

std::string swap_text(const v1::GetStatusResponse& status) {
  if (status.swap_path().empty()) return "none (limits are not enforced)";
  std::string text = status.swap_path() + ": " + size_text(status.swap_used_bytes()) + " of " +
                     size_text(status.swap_size_bytes()) + " used";
  if (status.swap_full()) text += " (FULL)";
  return text;
}

std::string budget_text(uint64_t bytes) {
  return bytes == 0 ? "none" : size_text(bytes);
}

std::string client_name(const v1::ClientStats& c) {
  return "pid " + std::to_string(c.pid()) + " (" + c.executable() + ")";
}

}  // namespace

std::string size_text(uint64_t bytes) {
  char buf[32];
  return format_size(bytes, buf, sizeof(buf));
}

std::string limit_text(const v1::ClientStats& client) {
  auto one = [](uint64_t bytes) { return bytes == 0 ? std::string("none") : size_text(bytes); };
  if (client.effective_limit_bytes() == client.limit_bytes()) return one(client.limit_bytes());
  return one(client.effective_limit_bytes()) + "/" + one(client.limit_bytes());
}

std::string duration_text(double seconds) {
  const uint64_t s = seconds > 0 ? static_cast<uint64_t>(seconds) : 0;
  char buf[48];
  if (s < 60) {
    snprintf(buf, sizeof(buf), "%" PRIu64 "s", s);
  } else if (s < 3600) {
    snprintf(buf, sizeof(buf), "%" PRIu64 "m %02" PRIu64 "s", s / 60, s % 60);
  } else if (s < 86400) {
    snprintf(buf, sizeof(buf), "%" PRIu64 "h %02" PRIu64 "m", s / 3600, s / 60 % 60);
  } else {
    snprintf(buf, sizeof(buf), "%" PRIu64 "d %02" PRIu64 "h", s / 86400, s / 3600 % 24);
  }
  return buf;
}

std::string user_name(uint32_t uid) {
  passwd pw;
  passwd* found = nullptr;
  char buf[4096];
  if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found != nullptr) {
    return found->pw_name;
  }
  return std::to_string(uid);
}

std::string client_table(const ClientList& clients) {
  if (clients.empty()) return "no clients\n";
  std::vector<std::vector<std::string>> rows;
  for (const v1::ClientStats& c : clients) {
    rows.push_back({std::to_string(c.pid()), user_name(c.uid()), c.executable(), c.policy(),
                    limit_text(c), size_text(c.resident_bytes()), size_text(c.swapped_bytes()),
                    rate_text(c.major_faults_per_second()), rate_text(c.evictions_per_second())});
  }
  return render_table({{"PID", true},
                       {"USER", false},
                       {"EXE", false},
                       {"POLICY", false},
                       {"LIMIT", true},
                       {"RESIDENT", true},
                       {"SWAPPED", true},
                       {"MAJ/s", true},
                       {"EVICT/s", true}},
                      rows);
}

std::string client_detail(const v1::ClientStats& c) {
  std::string out;
  add_field(&out, "pid", std::to_string(c.pid()));
  add_field(&out, "executable", c.executable());
  add_field(&out, "user",
            user_name(c.uid()) + " (uid " + std::to_string(c.uid()) + ", gid " +
                std::to_string(c.gid()) + ")");
  add_field(&out, "uptime", duration_text(c.uptime_seconds()));
  add_field(&out, "policy", c.policy());
  add_field(&out, "limit",
            (c.limit_bytes() == 0 ? std::string("none") : size_text(c.limit_bytes())) + " (" +
                c.limit_source() + ")");
  add_field(&out, "effective",
            c.effective_limit_bytes() == 0 ? "unlimited" : size_text(c.effective_limit_bytes()));
  add_field(&out, "min", size_text(c.min_bytes()));
  add_field(&out, "weight", std::to_string(c.weight()));
  add_field(&out, "resident", size_text(c.resident_bytes()));
  add_field(&out, "swapped", size_text(c.swapped_bytes()));
  add_field(&out, "arena", size_text(c.arena_bytes()));
  add_field(&out, "swap clusters",
            std::to_string(c.swap_clusters()) + " (" + size_text(c.swap_clusters() << 21) + ")");
  add_field(&out, "rates",
            "major " + rate_text(c.major_faults_per_second()) + "/s, first touch " +
                rate_text(c.first_touch_faults_per_second()) + "/s, evictions " +
                rate_text(c.evictions_per_second()) + "/s, read " +
                size_text(static_cast<uint64_t>(c.read_bytes_per_second())) + "/s, written " +
                size_text(static_cast<uint64_t>(c.written_bytes_per_second())) + "/s");
  const v1::Latency& l = c.fault_latency();
  add_field(&out, "fault latency",
            "p50 " + std::to_string(l.p50_us()) + " us, p90 " + std::to_string(l.p90_us()) +
                " us, p99 " + std::to_string(l.p99_us()) + " us");
  add_field(&out, "prefetch", prefetch_text(c.counters()));
  out += "counters\n";
  // By reflection, so a counter added to control.proto shows up without a change here;
  // every Counters field is a uint64.
  const v1::Counters& counters = c.counters();
  const auto* descriptor = counters.GetDescriptor();
  const auto* reflection = counters.GetReflection();
  size_t width = 0;
  for (int i = 0; i < descriptor->field_count(); ++i) {
    width = std::max(width, descriptor->field(i)->name().size());
  }
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const auto* field = descriptor->field(i);
    add_field(&out, "  " + field->name(), std::to_string(reflection->GetUInt64(counters, field)),
              width + 2);
  }
  return out;
}

std::string status_text(const v1::GetStatusResponse& s, const std::string& health,
                        const std::string& control) {
  std::string out = "extmemd " + s.version() + "\n";
  add_field(&out, "health", health);
  add_field(&out, "pid", std::to_string(s.pid()));
  add_field(&out, "uptime", duration_text(s.uptime_seconds()));
  add_field(&out, "clients", std::to_string(s.clients()));
  add_field(&out, "budget", budget_text(s.budget_bytes()));
  add_field(&out, "resident", size_text(s.resident_bytes()));
  add_field(&out, "swapped", size_text(s.swapped_bytes()));
  add_field(&out, "swap", swap_text(s));
  add_field(&out, "kernel swap", s.kernel_swap_on() ? "on" : "off");
  add_field(&out, "config", s.config_path().empty() ? "none" : s.config_path());
  std::string policies;
  for (const std::string& p : s.policies()) policies += (policies.empty() ? "" : ", ") + p;
  add_field(&out, "policies", policies);
  add_field(&out, "fault threads", std::to_string(s.fault_threads()));
  add_field(&out, "client socket", s.client_socket());
  add_field(&out, "control", control);
  return out;
}

std::string capabilities_text(const v1::GetStatusResponse& status) {
  std::vector<std::vector<std::string>> rows;
  for (const v1::Capability& c : status.capabilities()) {
    rows.push_back(
        {c.name(), c.present() ? "yes" : (c.required() ? "no" : "no (optional)"), c.detail()});
  }
  std::string out =
      render_table({{"CAPABILITY", false}, {"PRESENT", false}, {"DETAIL", false}}, rows);
  std::string missing;
  for (const v1::Capability& c : status.capabilities()) {
    if (c.required() && !c.present()) missing += " " + c.name();
  }
  out += missing.empty() ? "all required capabilities present\n"
                         : "missing required:" + missing + "\n";
  return out;
}

bool all_required_present(const v1::GetStatusResponse& status) {
  return std::none_of(status.capabilities().begin(), status.capabilities().end(),
                      [](const v1::Capability& c) { return c.required() && !c.present(); });
}

std::string snapshot_text(const v1::StatsSnapshot& snapshot) {
  const v1::GetStatusResponse& s = snapshot.status();
  const time_t now = static_cast<time_t>(snapshot.unix_time_ms() / 1000);
  tm local{};
  localtime_r(&now, &local);
  char clock[16];
  strftime(clock, sizeof(clock), "%H:%M:%S", &local);

  std::string out = "extmemd " + s.version() + "  pid " + std::to_string(s.pid()) + "  up " +
                    duration_text(s.uptime_seconds()) + "  " + clock + "\n";
  out += "clients " + std::to_string(s.clients()) + "  resident " + size_text(s.resident_bytes()) +
         "  swapped " + size_text(s.swapped_bytes()) + "  budget " + budget_text(s.budget_bytes()) +
         "  swap " + swap_text(s) + "\n\n";
  ClientList clients = snapshot.clients();
  std::stable_sort(clients.begin(), clients.end(),
                   [](const v1::ClientStats& a, const v1::ClientStats& b) {
                     return a.resident_bytes() > b.resident_bytes();
                   });
  return out + client_table(clients);
}

std::string limits_changed_text(const ClientList& clients) {
  std::string out;
  for (const v1::ClientStats& c : clients) {
    out += client_name(c) + ": limit " + limit_text(c) + ", min " + size_text(c.min_bytes()) +
           ", weight " + std::to_string(c.weight()) + "\n";
  }
  return out;
}

std::string policies_changed_text(const ClientList& clients) {
  std::string out;
  for (const v1::ClientStats& c : clients) out += client_name(c) + ": policy " + c.policy() + "\n";
  return out;
}

std::string to_json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  // Fails only on a string that is not UTF-8, which protobuf already refused to parse.
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) return "{}";
  return out;
}

std::string status_json(const v1::GetStatusResponse& status, const std::string& health) {
  std::string json = to_json(status);
  // The printer never emits an empty object for a GetStatusResponse (it prints zero
  // values), so the health field always follows another one.
  json.pop_back();
  return json + ",\"health\":\"" + health + "\"}";
}

std::string capabilities_json(const v1::GetStatusResponse& status) {
  std::string json = "{\"capabilities\":[";
  for (int i = 0; i < status.capabilities_size(); ++i) {
    json += (i > 0 ? "," : "") + to_json(status.capabilities(i));
  }
  return json + "],\"all_required_present\":" + (all_required_present(status) ? "true" : "false") +
         "}";
}

}  // namespace extmem::ctl
