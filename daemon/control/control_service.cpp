#include "control/control_service.hpp"

#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <thread>

#include <spdlog/spdlog.h>

#include "reclaim/reclaimer.hpp"
#include "swap/swap_device.hpp"

namespace extmem::daemon {

namespace {

using grpc::Status;
using grpc::StatusCode;

Status status_of(const Error& error) {
  StatusCode code = StatusCode::INTERNAL;
  switch (error.code()) {
    case EINVAL:
      code = StatusCode::INVALID_ARGUMENT;
      break;
    case ENOENT:
    case ESRCH:
      code = StatusCode::NOT_FOUND;
      break;
    case EOPNOTSUPP:
      code = StatusCode::FAILED_PRECONDITION;
      break;
    case EPERM:
    case EACCES:
      code = StatusCode::PERMISSION_DENIED;
      break;
    default:
      break;
  }
  return Status(code, error.context());
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

void fill_client(Client& client, SwapDevice* swap, v1::ClientStats* out) {
  const ClientIdentity& who = client.identity();
  out->set_pid(who.pid);
  out->set_uid(who.uid);
  out->set_gid(who.gid);
  out->set_executable(who.exe);
  {
    std::lock_guard lock(client.mu);
    out->set_policy(std::string(client.policy->name()));
    out->set_resident_bytes(client.pages.resident_pages() * kPageSize);
    out->set_swapped_bytes(client.pages.swapped_pages() * kPageSize);
  }
  const ClientTerms terms = client.terms();
  out->set_limit_bytes(terms.limit_pages * kPageSize);
  out->set_effective_limit_bytes(client.limit_pages() * kPageSize);
  out->set_min_bytes(terms.min_pages * kPageSize);
  out->set_weight(terms.weight);
  out->set_limit_source(terms.limit_source);
  out->set_arena_bytes(client.arena_size());
  out->set_uptime_seconds(seconds_since(client.started()));
  out->set_swap_clusters(swap != nullptr ? swap->clusters_of(client.id()) : 0);

  const ClientRates rates = client.rates();
  out->set_major_faults_per_second(rates.major_faults);
  out->set_first_touch_faults_per_second(rates.first_touch_faults);
  out->set_evictions_per_second(rates.evictions);
  out->set_read_bytes_per_second(rates.bytes_read);
  out->set_written_bytes_per_second(rates.bytes_written);

  const ClientCounters& c = client.counters();
  v1::Counters* n = out->mutable_counters();
  n->set_first_touch_faults(c.first_touch_faults.load());
  n->set_zero_filled_pages(c.zero_filled_pages.load());
  n->set_major_faults(c.major_faults.load());
  n->set_minor_faults(c.minor_faults.load());
  n->set_wp_faults(c.wp_faults.load());
  n->set_spurious_faults(c.spurious_faults.load());
  n->set_evictions(c.evictions.load());
  n->set_zero_evictions(c.zero_evictions.load());
  n->set_clean_evictions(c.clean_evictions.load());
  n->set_access_resets(c.access_resets.load());
  n->set_bytes_read(c.bytes_read.load());
  n->set_bytes_written(c.bytes_written.load());
  n->set_released_pages(c.released_pages.load());
  n->set_remove_events(c.remove_events.load());
  n->set_unmap_events(c.unmap_events.load());
  n->set_remap_events(c.remap_events.load());
  n->set_fault_errors(c.fault_errors.load());
  n->set_io_errors(c.io_errors.load());
  n->set_swap_full(c.swap_full.load());
  n->set_over_limit(c.over_limit.load());
  n->set_prefetched_pages(c.prefetched_pages.load());
  n->set_prefetch_hits(c.prefetch_hits.load());
  n->set_fault_around_pages(c.fault_around_pages.load());
  n->set_prefetch_markers(c.prefetch_markers.load());
  n->set_prefetch_markers_used(c.prefetch_markers_used.load());
  n->set_prefetch_markers_unused(c.prefetch_markers_unused.load());
  n->set_poisoned_pages(c.poisoned_pages.load());
  n->set_stalled_reads(c.stalled_reads.load());
  n->set_hints_received(c.hints_received.load());
  n->set_hints_applied(c.hints_applied.load());
  n->set_hints_invalid(c.hints_invalid.load());
  n->set_hints_ring_full(c.hints_ring_full.load());
  v1::Latency* latency = out->mutable_fault_latency();
  latency->set_p50_us(c.fault_latency.quantile_us(0.5));
  latency->set_p90_us(c.fault_latency.quantile_us(0.9));
  latency->set_p99_us(c.fault_latency.quantile_us(0.99));
}

}  // namespace

void ControlService::fill_status(v1::GetStatusResponse* out, bool with_capabilities) const {
  out->set_version(ctx_.version);
  out->set_pid(getpid());
  out->set_uptime_seconds(seconds_since(ctx_.started));
  out->set_budget_bytes(ctx_.governor.budget_bytes());
  out->set_kernel_swap_on(ctx_.caps.kernel_swap_on);
  out->set_config_path(ctx_.options.config_path);
  out->set_fault_threads(ctx_.options.fault_threads);
  out->set_client_socket(ctx_.options.socket_path);
  for (const auto& name : policy_names()) out->add_policies(name);
  auto clients = ctx_.registry.snapshot();
  const MemoryTotals totals = memory_totals(clients);
  out->set_clients(static_cast<uint32_t>(clients.size()));
  out->set_resident_bytes(totals.resident_pages * kPageSize);
  out->set_swapped_bytes(totals.swapped_pages * kPageSize);
  if (ctx_.swap != nullptr) {
    out->set_swap_path(ctx_.swap->path());
    out->set_swap_size_bytes(ctx_.swap->size());
    out->set_swap_used_bytes(ctx_.swap->clusters_used() * SwapSpace::kClusterBytes);
    out->set_swap_full(ctx_.reclaimer != nullptr && ctx_.reclaimer->swap_full());
    out->set_swap_degraded(ctx_.swap->degraded());
    out->set_swap_io_errors(ctx_.swap->io_errors());
  }
  if (with_capabilities) {
    for (const auto& cap : ctx_.caps.items) {
      v1::Capability* c = out->add_capabilities();
      c->set_name(cap.name);
      c->set_present(cap.present);
      c->set_required(cap.required);
      c->set_detail(cap.detail);
    }
  }
}

Status ControlService::select(const v1::ClientSelector& selector,
                              std::vector<std::shared_ptr<Client>>* out) const {
  std::function<bool(const Client&)> named;
  std::string none;
  switch (selector.target_case()) {
    case v1::ClientSelector::kPid:
      named = [&](const Client& c) { return c.identity().pid == selector.pid(); };
      none = "no client with pid " + std::to_string(selector.pid());
      break;
    case v1::ClientSelector::kExecutable:
      named = [&](const Client& c) { return c.identity().exe == selector.executable(); };
      none = "no client runs '" + selector.executable() + "'";
      break;
    case v1::ClientSelector::TARGET_NOT_SET:
      return Status(StatusCode::INVALID_ARGUMENT, "name a client by pid or executable name");
  }
  for (auto& client : ctx_.registry.snapshot()) {
    if (named(*client)) out->push_back(std::move(client));
  }
  return out->empty() ? Status(StatusCode::NOT_FOUND, none) : Status::OK;
}

Status ControlService::GetStatus(grpc::ServerContext*, const v1::GetStatusRequest*,
                                 v1::GetStatusResponse* out) {
  fill_status(out, true);
  return Status::OK;
}

Status ControlService::ListClients(grpc::ServerContext*, const v1::ListClientsRequest*,
                                   v1::ListClientsResponse* out) {
  for (const auto& client : ctx_.registry.snapshot()) {
    fill_client(*client, ctx_.swap, out->add_clients());
  }
  return Status::OK;
}

Status ControlService::GetClient(grpc::ServerContext*, const v1::GetClientRequest* in,
                                 v1::GetClientResponse* out) {
  std::vector<std::shared_ptr<Client>> clients;
  if (Status s = select(in->client(), &clients); !s.ok()) return s;
  for (const auto& client : clients) fill_client(*client, ctx_.swap, out->add_clients());
  return Status::OK;
}

Status ControlService::SetLimit(grpc::ServerContext*, const v1::SetLimitRequest* in,
                                v1::SetLimitResponse* out) {
  std::vector<std::shared_ptr<Client>> clients;
  if (Status s = select(in->client(), &clients); !s.ok()) return s;
  std::optional<uint64_t> min;
  std::optional<uint32_t> weight;
  if (in->has_min_bytes()) min = in->min_bytes();
  if (in->has_weight()) weight = in->weight();
  for (const auto& client : clients) {
    if (auto set = ctx_.governor.set_limit(*client, in->limit_bytes(), min, weight); !set) {
      return status_of(set.error());
    }
    spdlog::info("client {}: limit set to {} bytes by the control plane", client->identity().pid,
                 in->limit_bytes());
  }
  if (ctx_.reclaimer != nullptr) ctx_.reclaimer->wake();
  for (const auto& client : clients) fill_client(*client, ctx_.swap, out->add_clients());
  return Status::OK;
}

Status ControlService::SetPolicy(grpc::ServerContext*, const v1::SetPolicyRequest* in,
                                 v1::SetPolicyResponse* out) {
  std::vector<std::shared_ptr<Client>> clients;
  if (Status s = select(in->client(), &clients); !s.ok()) return s;
  if (!make_policy(in->policy())) {
    return Status(StatusCode::INVALID_ARGUMENT,
                  "unknown policy '" + in->policy() + "' (known: " + known_policy_list() + ")");
  }
  for (const auto& client : clients) {
    std::lock_guard lock(client->mu);
    client->replace_policy(make_policy(in->policy()));
    spdlog::info("client {}: policy set to {} by the control plane", client->identity().pid,
                 in->policy());
  }
  for (const auto& client : clients) fill_client(*client, ctx_.swap, out->add_clients());
  return Status::OK;
}

Status ControlService::SetBudget(grpc::ServerContext*, const v1::SetBudgetRequest* in,
                                 v1::SetBudgetResponse* out) {
  if (!ctx_.governor.enforcing()) {
    return Status(StatusCode::FAILED_PRECONDITION,
                  "extmemd has no swap device (--swap), so it cannot enforce a budget");
  }
  if (in->budget_bytes() != 0 && in->budget_bytes() < kMinLimitBytes) {
    return Status(StatusCode::INVALID_ARGUMENT, "a budget must be at least 1M");
  }
  ctx_.governor.set_budget(in->budget_bytes());
  if (ctx_.reclaimer != nullptr) ctx_.reclaimer->wake();
  spdlog::info("global budget set to {} bytes by the control plane", in->budget_bytes());
  out->set_budget_bytes(ctx_.governor.budget_bytes());
  return Status::OK;
}

Status ControlService::WatchStats(grpc::ServerContext* context, const v1::WatchStatsRequest* in,
                                  grpc::ServerWriter<v1::StatsSnapshot>* writer) {
  using namespace std::chrono;
  const auto interval =
      milliseconds(in->interval_ms() == 0 ? 1000 : std::clamp(in->interval_ms(), 100u, 3600000u));
  auto next = steady_clock::now();
  while (!context->IsCancelled() && !stopping_.load()) {
    v1::StatsSnapshot snapshot;
    snapshot.set_unix_time_ms(
        duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
    fill_status(snapshot.mutable_status(), false);
    for (const auto& client : ctx_.registry.snapshot()) {
      fill_client(*client, ctx_.swap, snapshot.add_clients());
    }
    if (!writer->Write(snapshot)) break;
    next += interval;
    // Short sleeps, so a cancelled call or a stopping daemon ends the stream promptly.
    while (steady_clock::now() < next && !context->IsCancelled() && !stopping_.load()) {
      std::this_thread::sleep_for(
          std::min<steady_clock::duration>(milliseconds(50), next - steady_clock::now()));
    }
  }
  return Status::OK;
}

Result<void> ControlServer::start(const Options& options) {
  path_ = options.control_path;
  struct stat st;
  if (lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Error::make(EEXIST, "control socket %s exists and is not a socket", path_.c_str());
    }
    unlink(path_.c_str());
  }
  // Bound under a temporary name and renamed once its mode and group are set, so nobody
  // can connect while it still has the umask's permissions.
  const std::string temp = path_ + "." + std::to_string(getpid());
  unlink(temp.c_str());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + temp, grpc::InsecureServerCredentials());
  if (!options.control_tcp.empty()) {
    builder.AddListeningPort(options.control_tcp, grpc::InsecureServerCredentials());
  }
  builder.RegisterService(&service_);
  server_ = builder.BuildAndStart();
  if (!server_) {
    return Error::make(EADDRNOTAVAIL, "cannot serve the control plane on %s%s%s", path_.c_str(),
                       options.control_tcp.empty() ? "" : " and ", options.control_tcp.c_str());
  }
  const gid_t group = options.control_group.value_or(static_cast<gid_t>(-1));
  if (chmod(temp.c_str(), options.control_mode) != 0 ||
      (options.control_group && chown(temp.c_str(), static_cast<uid_t>(-1), group) != 0) ||
      rename(temp.c_str(), path_.c_str()) != 0) {
    Error error = Error::from_errno("setting up the control socket %s", temp.c_str());
    unlink(temp.c_str());
    stop();
    return error;
  }
  return {};
}

void ControlServer::stop() {
  if (!server_) return;
  service_.stop();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_->Wait();
  server_.reset();
  unlink(path_.c_str());
}

}  // namespace extmem::daemon
