// A load client for key-value servers over their own protocols: Redis (RESP) and
// memcached (text protocol), on a Unix socket. Every value has distinct contents derived
// from its key, so a read checks every byte.
//
//   extmem-kvload --proto redis|memcached --socket PATH [options] load|verify|bench
//     load     store keys 0..N-1
//     verify   read keys 0..N-1 back and compare byte for byte
//     bench    --conns C connections for --seconds S, random keys, --get-percent P
//              GETs (checked) and the rest SETs of the same contents
//   options: --keys N (default 1000), --value-bytes B (default 4000), --pipeline D
//            (default 16; load and verify), --conns C (default 4), --seconds S (default 10),
//            --get-percent P (default 90), --seed X
// Prints one line of "name value" pairs; exits 1 on a mismatch or a protocol error.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

enum class Protocol { kRedis, kMemcached };

struct Options {
  Protocol proto = Protocol::kRedis;
  std::string socket_path;
  std::string command;
  uint64_t keys = 1000;
  size_t value_bytes = 4000;
  int pipeline = 16;
  int conns = 4;
  int seconds = 10;
  int get_percent = 90;
  uint64_t seed = 1;
};

[[noreturn]] void usage(const char* why) {
  fprintf(stderr,
          "extmem-kvload: %s\n"
          "usage: extmem-kvload --proto redis|memcached --socket PATH [--keys N] "
          "[--value-bytes B] [--pipeline D] [--conns C] [--seconds S] [--get-percent P] "
          "[--seed X] load|verify|bench\n",
          why);
  exit(2);
}

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::string key_name(uint64_t i) {
  return "key:" + std::to_string(i);
}

// The contents of key i: its name, then bytes from a generator seeded by i.
void value_of(uint64_t i, size_t bytes, std::string& out) {
  out.resize(bytes);
  uint64_t state = i * 0x2545f4914f6cdd1dULL + 17;
  for (size_t pos = 0; pos < bytes; pos += 8) {
    uint64_t r = splitmix64(state);
    memcpy(out.data() + pos, &r, std::min<size_t>(8, bytes - pos));
  }
  std::string name = key_name(i);
  memcpy(out.data(), name.data(), std::min(name.size(), bytes));
}

class ProtocolError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One connection with a buffered reader.
class Connection {
 public:
  Connection(const std::string& path, Protocol proto) : proto_(proto) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd_ < 0 || path.size() >= sizeof(addr.sun_path)) throw ProtocolError("socket");
    memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      throw ProtocolError("connect " + path + ": " + strerror(errno));
    }
  }
  ~Connection() { close(fd_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void queue_set(const std::string& key, const std::string& value) {
    if (proto_ == Protocol::kRedis) {
      out_ += "*3\r\n$3\r\nSET\r\n$" + std::to_string(key.size()) + "\r\n" + key + "\r\n$" +
              std::to_string(value.size()) + "\r\n";
    } else {
      out_ += "set " + key + " 0 0 " + std::to_string(value.size()) + "\r\n";
    }
    out_ += value;
    out_ += "\r\n";
  }

  void queue_get(const std::string& key) {
    if (proto_ == Protocol::kRedis) {
      out_ += "*2\r\n$3\r\nGET\r\n$" + std::to_string(key.size()) + "\r\n" + key + "\r\n";
    } else {
      out_ += "get " + key + "\r\n";
    }
  }

  void flush() {
    size_t done = 0;
    while (done < out_.size()) {
      ssize_t n = write(fd_, out_.data() + done, out_.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw ProtocolError(std::string("write: ") + strerror(errno));
      done += static_cast<size_t>(n);
    }
    out_.clear();
  }

  void expect_stored() {
    std::string line = read_line();
    if (line != (proto_ == Protocol::kRedis ? "+OK" : "STORED")) {
      throw ProtocolError("SET answered: " + line);
    }
  }

  // The value of a GET; false when the key is missing.
  bool read_value(const std::string& key, std::string& value) {
    std::string line = read_line();
    size_t length;
    if (proto_ == Protocol::kRedis) {
      if (line == "$-1") return false;
      if (line.empty() || line[0] != '$') throw ProtocolError("GET answered: " + line);
      length = std::stoul(line.substr(1));
    } else {
      if (line == "END") return false;
      const std::string prefix = "VALUE " + key + " 0 ";
      if (line.compare(0, prefix.size(), prefix) != 0) throw ProtocolError("get answered: " + line);
      length = std::stoul(line.substr(prefix.size()));
    }
    read_exact(value, length);
    if (read_line() != "") throw ProtocolError("value not followed by CRLF");
    if (proto_ == Protocol::kMemcached && read_line() != "END") throw ProtocolError("no END");
    return true;
  }

 private:
  void fill() {
    if (begin_ > 0 && begin_ == end_) begin_ = end_ = 0;
    if (end_ == in_.size()) {
      if (begin_ > 0) {
        in_.erase(0, begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      in_.resize(std::max<size_t>(in_.size() * 2, 1 << 16));
    }
    ssize_t n;
    do {
      n = read(fd_, in_.data() + end_, in_.size() - end_);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) throw ProtocolError(n == 0 ? "server closed the connection" : strerror(errno));
    end_ += static_cast<size_t>(n);
  }

  std::string read_line() {
    size_t scanned = begin_;
    for (;;) {
      const char* start = in_.data() + scanned;
      const void* lf = memchr(start, '\n', end_ - scanned);
      if (lf != nullptr) {
        size_t at = static_cast<size_t>(static_cast<const char*>(lf) - in_.data());
        if (at == begin_ || in_[at - 1] != '\r') throw ProtocolError("line without CR");
        std::string line(in_.data() + begin_, at - 1 - begin_);
        begin_ = at + 1;
        return line;
      }
      scanned = end_;
      size_t old_begin = begin_;
      fill();
      scanned -= old_begin - begin_;
    }
  }

  void read_exact(std::string& out, size_t length) {
    out.clear();
    while (out.size() < length) {
      if (begin_ == end_) fill();
      size_t take = std::min(length - out.size(), end_ - begin_);
      out.append(in_.data() + begin_, take);
      begin_ += take;
    }
  }

  Protocol proto_;
  int fd_ = -1;
  std::string out_;
  std::string in_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int load(const Options& o) {
  Connection c(o.socket_path, o.proto);
  std::string value;
  auto start = std::chrono::steady_clock::now();
  for (uint64_t first = 0; first < o.keys; first += static_cast<uint64_t>(o.pipeline)) {
    uint64_t last = std::min<uint64_t>(o.keys, first + static_cast<uint64_t>(o.pipeline));
    for (uint64_t i = first; i < last; ++i) {
      value_of(i, o.value_bytes, value);
      c.queue_set(key_name(i), value);
    }
    c.flush();
    for (uint64_t i = first; i < last; ++i) c.expect_stored();
  }
  double s = seconds_since(start);
  printf("loaded %llu bytes %llu seconds %.2f\n", static_cast<unsigned long long>(o.keys),
         static_cast<unsigned long long>(o.keys * o.value_bytes), s);
  return 0;
}

int verify(const Options& o) {
  Connection c(o.socket_path, o.proto);
  std::string expected, got;
  uint64_t mismatches = 0, missing = 0;
  auto start = std::chrono::steady_clock::now();
  for (uint64_t first = 0; first < o.keys; first += static_cast<uint64_t>(o.pipeline)) {
    uint64_t last = std::min<uint64_t>(o.keys, first + static_cast<uint64_t>(o.pipeline));
    for (uint64_t i = first; i < last; ++i) c.queue_get(key_name(i));
    c.flush();
    for (uint64_t i = first; i < last; ++i) {
      if (!c.read_value(key_name(i), got)) {
        if (missing++ < 5) fprintf(stderr, "missing %s\n", key_name(i).c_str());
        continue;
      }
      value_of(i, o.value_bytes, expected);
      if (got != expected && mismatches++ < 5) {
        fprintf(stderr, "mismatch %s (%zu bytes, expected %zu)\n", key_name(i).c_str(), got.size(),
                expected.size());
      }
    }
  }
  double s = seconds_since(start);
  printf("verified %llu mismatches %llu missing %llu seconds %.2f\n",
         static_cast<unsigned long long>(o.keys), static_cast<unsigned long long>(mismatches),
         static_cast<unsigned long long>(missing), s);
  return mismatches == 0 && missing == 0 ? 0 : 1;
}

// Closed-loop clients, one request in flight per connection.
int bench(const Options& o) {
  std::atomic<uint64_t> ops{0}, gets{0}, mismatches{0}, missing{0};
  std::atomic<bool> failed{false};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.seconds);
  std::vector<std::thread> threads;
  for (int t = 0; t < o.conns; ++t) {
    threads.emplace_back([&, t] {
      try {
        Connection c(o.socket_path, o.proto);
        uint64_t state = o.seed * 1000003 + static_cast<uint64_t>(t);
        std::string expected, got;
        uint64_t my_ops = 0;
        while (std::chrono::steady_clock::now() < deadline) {
          uint64_t r = splitmix64(state);
          uint64_t key = r % o.keys;
          bool is_get = static_cast<int>((r >> 40) % 100) < o.get_percent;
          value_of(key, o.value_bytes, expected);
          if (is_get) {
            c.queue_get(key_name(key));
            c.flush();
            if (!c.read_value(key_name(key), got)) {
              ++missing;
            } else if (got != expected) {
              ++mismatches;
            }
            ++gets;
          } else {
            c.queue_set(key_name(key), expected);
            c.flush();
            c.expect_stored();
          }
          ++my_ops;
        }
        ops += my_ops;
      } catch (const std::exception& e) {
        fprintf(stderr, "connection %d: %s\n", t, e.what());
        failed = true;
      }
    });
  }
  for (auto& t : threads) t.join();
  printf("ops %llu gets %llu ops_per_second %.0f mismatches %llu missing %llu\n",
         static_cast<unsigned long long>(ops.load()), static_cast<unsigned long long>(gets.load()),
         static_cast<double>(ops.load()) / o.seconds,
         static_cast<unsigned long long>(mismatches.load()),
         static_cast<unsigned long long>(missing.load()));
  return failed || mismatches > 0 || missing > 0 ? 1 : 0;
}

uint64_t number(const char* flag, const char* text) {
  char* end = nullptr;
  unsigned long long v = strtoull(text, &end, 10);
  if (end == text || *end != '\0') usage((std::string("bad number for ") + flag).c_str());
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) {
      o.command = a;
      continue;
    }
    if (i + 1 >= argc) usage(("missing value for " + a).c_str());
    const char* v = argv[++i];
    if (a == "--proto") {
      if (strcmp(v, "redis") == 0) {
        o.proto = Protocol::kRedis;
      } else if (strcmp(v, "memcached") == 0) {
        o.proto = Protocol::kMemcached;
      } else {
        usage("--proto is redis or memcached");
      }
    } else if (a == "--socket") {
      o.socket_path = v;
    } else if (a == "--keys") {
      o.keys = number("--keys", v);
    } else if (a == "--value-bytes") {
      o.value_bytes = number("--value-bytes", v);
    } else if (a == "--pipeline") {
      o.pipeline = static_cast<int>(number("--pipeline", v));
    } else if (a == "--conns") {
      o.conns = static_cast<int>(number("--conns", v));
    } else if (a == "--seconds") {
      o.seconds = static_cast<int>(number("--seconds", v));
    } else if (a == "--get-percent") {
      o.get_percent = static_cast<int>(number("--get-percent", v));
    } else if (a == "--seed") {
      o.seed = number("--seed", v);
    } else {
      usage(("unknown option " + a).c_str());
    }
  }
  if (o.socket_path.empty()) usage("--socket is required");
  if (o.keys == 0 || o.value_bytes == 0 || o.pipeline <= 0 || o.conns <= 0 || o.seconds <= 0) {
    usage("--keys, --value-bytes, --pipeline, --conns and --seconds must be positive");
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  try {
    if (o.command == "load") return load(o);
    if (o.command == "verify") return verify(o);
    if (o.command == "bench") return bench(o);
  } catch (const std::exception& e) {
    fprintf(stderr, "extmem-kvload: %s\n", e.what());
    return 1;
  }
  usage("the command is load, verify or bench");
}
