#include "commands.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "extmem/v1/control.grpc.pb.h"
#include "format.hpp"
#include "grpc/health/v1/health.grpc.pb.h"
#include "run_command.hpp"

namespace extmem::ctl {

namespace {

using grpc::health::v1::HealthCheckResponse;

void print(const std::string& text) {
  fputs(text.c_str(), stdout);
}

int report(const Failure& failure) {
  fprintf(stderr, "extmemctl: %s\n", failure.message.c_str());
  return failure.exit_code;
}

std::string unreachable_message(const Invocation& inv) {
  return "cannot reach extmemd at " + inv.control + " (is it running? systemctl start extmemd)";
}

// A channel to the daemon and a deadline for each call.
class Session {
 public:
  explicit Session(const Invocation& inv)
      : inv_(inv),
        channel_(
            grpc::CreateChannel(control_target(inv.control), grpc::InsecureChannelCredentials())),
        control_(v1::Control::NewStub(channel_)),
        health_(grpc::health::v1::Health::NewStub(channel_)) {}

  v1::Control::Stub& control() { return *control_; }
  grpc::health::v1::Health::Stub& health() { return *health_; }

  std::unique_ptr<grpc::ClientContext> call() const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::duration_cast<std::chrono::system_clock::duration>(
                              std::chrono::duration<double>(inv_.timeout_seconds)));
    return context;
  }

  int fail(const grpc::Status& status) const { return report(describe_failure(status, inv_)); }

 private:
  const Invocation& inv_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Control::Stub> control_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

int status(Session& session, const Invocation& inv) {
  v1::GetStatusResponse response;
  if (auto s = session.control().GetStatus(session.call().get(), {}, &response); !s.ok()) {
    return session.fail(s);
  }
  // The health service is asked too: GetStatus answering does not mean the daemon
  // reports itself as serving (it may be shutting down).
  HealthCheckResponse health;
  grpc::Status checked = session.health().Check(session.call().get(), {}, &health);
  if (!checked.ok() && checked.error_code() != grpc::StatusCode::UNIMPLEMENTED) {
    return session.fail(checked);
  }
  const std::string token =
      checked.ok() ? HealthCheckResponse::ServingStatus_Name(health.status()) : "UNKNOWN";
  const bool serving = checked.ok() && health.status() == HealthCheckResponse::SERVING;
  if (inv.json) {
    print(status_json(response, token) + "\n");
  } else {
    print(status_text(response, checked.ok() ? token : "UNKNOWN (no health service)", inv.control));
  }
  return serving ? kExitOk : kExitError;
}

int list(Session& session, const Invocation& inv) {
  v1::ListClientsResponse response;
  if (auto s = session.control().ListClients(session.call().get(), {}, &response); !s.ok()) {
    return session.fail(s);
  }
  print(inv.json ? to_json(response) + "\n" : client_table(response.clients()));
  return kExitOk;
}

int show(Session& session, const Invocation& inv) {
  v1::GetClientRequest request;
  *request.mutable_client() = inv.selector;
  v1::GetClientResponse response;
  if (auto s = session.control().GetClient(session.call().get(), request, &response); !s.ok()) {
    return session.fail(s);
  }
  if (inv.json) {
    print(to_json(response) + "\n");
    return kExitOk;
  }
  for (int i = 0; i < response.clients_size(); ++i) {
    print((i > 0 ? "\n" : "") + client_detail(response.clients(i)));
  }
  return kExitOk;
}

int set_limit(Session& session, const Invocation& inv) {
  v1::SetLimitRequest request;
  *request.mutable_client() = inv.selector;
  request.set_limit_bytes(inv.size);
  if (inv.min) request.set_min_bytes(*inv.min);
  if (inv.weight) request.set_weight(*inv.weight);
  v1::SetLimitResponse response;
  if (auto s = session.control().SetLimit(session.call().get(), request, &response); !s.ok()) {
    return session.fail(s);
  }
  print(inv.json ? to_json(response) + "\n" : limits_changed_text(response.clients()));
  return kExitOk;
}

int set_policy(Session& session, const Invocation& inv) {
  v1::SetPolicyRequest request;
  *request.mutable_client() = inv.selector;
  request.set_policy(inv.policy);
  v1::SetPolicyResponse response;
  if (auto s = session.control().SetPolicy(session.call().get(), request, &response); !s.ok()) {
    return session.fail(s);
  }
  print(inv.json ? to_json(response) + "\n" : policies_changed_text(response.clients()));
  return kExitOk;
}

int set_budget(Session& session, const Invocation& inv) {
  v1::SetBudgetRequest request;
  request.set_budget_bytes(inv.size);
  v1::SetBudgetResponse response;
  if (auto s = session.control().SetBudget(session.call().get(), request, &response); !s.ok()) {
    return session.fail(s);
  }
  print(inv.json ? to_json(response) + "\n"
                 : "budget: " +
                       (response.budget_bytes() == 0 ? std::string("none")
                                                     : size_text(response.budget_bytes())) +
                       "\n");
  return kExitOk;
}

int check(Session& session, const Invocation& inv) {
  v1::GetStatusResponse response;
  if (auto s = session.control().GetStatus(session.call().get(), {}, &response); !s.ok()) {
    return session.fail(s);
  }
  print(inv.json ? capabilities_json(response) + "\n" : capabilities_text(response));
  return all_required_present(response) ? kExitOk : kExitError;
}

// The stream's context, cancelled on SIGINT or SIGTERM so that top ends normally. The
// signals are blocked in every thread and taken by sigtimedwait in a thread of its own,
// because a signal handler cannot cancel a call safely. Constructed before the Session:
// gRPC's threads inherit the signal mask.
class InterruptibleContext {
 public:
  InterruptibleContext() {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
    thread_ = std::thread([this] {
      const timespec poll{0, 100'000'000};
      while (!stop_) {
        if (sigtimedwait(&signals_, nullptr, &poll) > 0) {
          interrupted_ = true;
          context_.TryCancel();  // also cancels a call not started yet
          return;
        }
      }
    });
  }
  ~InterruptibleContext() {
    stop_ = true;
    thread_.join();
  }

  grpc::ClientContext& context() { return context_; }
  bool interrupted() const { return interrupted_; }

 private:
  sigset_t signals_;
  grpc::ClientContext context_;  // no deadline: the stream lasts until it is cancelled
  std::atomic<bool> stop_{false};
  std::atomic<bool> interrupted_{false};
  std::thread thread_;
};

int top(Session& session, const Invocation& inv, InterruptibleContext& interruptible) {
  grpc::ClientContext& context = interruptible.context();
  v1::WatchStatsRequest request;
  request.set_interval_ms(static_cast<uint32_t>(inv.interval_seconds * 1000));
  auto reader = session.control().WatchStats(&context, request);
  const bool terminal = isatty(STDOUT_FILENO) == 1;
  uint64_t shown = 0;
  v1::StatsSnapshot snapshot;
  while (reader->Read(&snapshot)) {
    if (inv.json) {
      print(to_json(snapshot) + "\n");
    } else if (terminal) {
      print("\x1b[H\x1b[2J" + snapshot_text(snapshot));  // home, clear screen
    } else {
      print((shown > 0 ? "\n" : "") + snapshot_text(snapshot));
    }
    fflush(stdout);
    if (++shown == inv.iterations) {
      context.TryCancel();
      break;
    }
  }
  const grpc::Status finished = reader->Finish();
  if (interruptible.interrupted() || (inv.iterations != 0 && shown == inv.iterations))
    return kExitOk;
  // Not ended by us: the daemon stopped or the connection broke (unless it refused).
  const grpc::StatusCode code = finished.error_code();
  const bool went_away = code == grpc::StatusCode::OK || code == grpc::StatusCode::CANCELLED ||
                         code == grpc::StatusCode::UNAVAILABLE;
  if (!went_away || (shown == 0 && code == grpc::StatusCode::UNAVAILABLE)) {
    return session.fail(finished);
  }
  const std::string detail = finished.error_message();
  return report({kExitUnreachable, "lost the connection to extmemd at " + inv.control +
                                       (detail.empty() ? "" : " (" + detail + ")")});
}

int run(const Invocation& inv) {
  std::string error;
  auto shim = find_shim(getenv("EXTMEM_SHIM"), executable_dir(), &error);
  if (!shim) return report({kExitError, error});
  return exec_under_shim(inv.run, *shim);
}

}  // namespace

Failure describe_failure(const grpc::Status& status, const Invocation& inv) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return {kExitUnreachable, unreachable_message(inv)};
    case grpc::StatusCode::DEADLINE_EXCEEDED: {
      char seconds[32];
      snprintf(seconds, sizeof(seconds), "%g", inv.timeout_seconds);
      return {kExitUnreachable,
              "extmemd at " + inv.control + " did not answer within " + seconds + " s"};
    }
    default:
      return {kExitError, status.error_message().empty()
                              ? "extmemd failed with status " +
                                    std::to_string(static_cast<int>(status.error_code()))
                              : status.error_message()};
  }
}

int execute(const Invocation& inv) {
  switch (inv.command) {
    case Command::kHelp:
      print(usage());
      return kExitOk;
    case Command::kVersion:
      print(std::string("extmemctl ") + EXTMEM_VERSION + "\n");
      return kExitOk;
    case Command::kRun:
      return run(inv);
    default:
      break;  // the others talk to the daemon
  }
  // Answered at once, and truthfully: gRPC reports both as a failed connection.
  if (const std::string path = control_socket_path(inv.control); !path.empty()) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0 && errno == ENOENT) {
      return report({kExitUnreachable, unreachable_message(inv)});
    }
    if (access(path.c_str(), W_OK) != 0 && errno == EACCES) {
      return report({kExitUnreachable, "no permission to use " + path +
                                           " (extmemd's control socket is for root and its "
                                           "control group)"});
    }
  }
  std::optional<InterruptibleContext> stream;
  if (inv.command == Command::kTop) stream.emplace();  // before gRPC's threads
  Session session(inv);
  switch (inv.command) {
    case Command::kStatus:
      return status(session, inv);
    case Command::kList:
      return list(session, inv);
    case Command::kShow:
      return show(session, inv);
    case Command::kTop:
      return top(session, inv, *stream);
    case Command::kSetLimit:
      return set_limit(session, inv);
    case Command::kSetPolicy:
      return set_policy(session, inv);
    case Command::kSetBudget:
      return set_budget(session, inv);
    case Command::kCheck:
      return check(session, inv);
    case Command::kHelp:
    case Command::kVersion:
    case Command::kRun:
      break;  // answered above, without a session
  }
  return kExitUsage;
}

int extmemctl_main(const std::vector<std::string>& args) {
  ParseResult parsed = parse_command_line(args, getenv("EXTMEM_CONTROL"));
  if (!parsed.invocation) {
    fprintf(stderr, "extmemctl: %s\n%s(extmemctl --help for more)\n", parsed.error.c_str(),
            synopsis().c_str());
    return kExitUsage;
  }
  return execute(*parsed.invocation);
}

}  // namespace extmem::ctl
