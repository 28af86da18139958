// The gRPC control plane (proto/extmem/v1/control.proto): status, client stats, live
// limits, policies and budget, and a stats stream. Served on a Unix socket whose mode
// and group decide who may call it, and on TCP only when configured.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "budget/governor.hpp"
#include "client/registry.hpp"
#include "config/options.hpp"
#include "extmem/kernel/probe.hpp"
#include "extmem/kernel/result.hpp"
#include "extmem/v1/control.grpc.pb.h"

namespace extmem::daemon {

class SwapDevice;
class Reclaimer;

// What the control plane reads and changes. Everything outlives the service.
struct ControlContext {
  ClientRegistry& registry;
  Governor& governor;
  SwapDevice* swap;      // none: limits are not enforced
  Reclaimer* reclaimer;  // none without a swap device
  const kernel::Capabilities& caps;
  const Options& options;  // only fields a reload never changes are read
  std::string version;
  std::chrono::steady_clock::time_point started;
};

class ControlService final : public v1::Control::Service {
 public:
  explicit ControlService(ControlContext context) : ctx_(std::move(context)) {}

  grpc::Status GetStatus(grpc::ServerContext*, const v1::GetStatusRequest*,
                         v1::GetStatusResponse* out) override;
  grpc::Status ListClients(grpc::ServerContext*, const v1::ListClientsRequest*,
                           v1::ListClientsResponse* out) override;
  grpc::Status GetClient(grpc::ServerContext*, const v1::GetClientRequest* in,
                         v1::GetClientResponse* out) override;
  grpc::Status SetLimit(grpc::ServerContext*, const v1::SetLimitRequest* in,
                        v1::SetLimitResponse* out) override;
  grpc::Status SetPolicy(grpc::ServerContext*, const v1::SetPolicyRequest* in,
                         v1::SetPolicyResponse* out) override;
  grpc::Status SetBudget(grpc::ServerContext*, const v1::SetBudgetRequest* in,
                         v1::SetBudgetResponse* out) override;
  grpc::Status WatchStats(grpc::ServerContext* context, const v1::WatchStatsRequest* in,
                          grpc::ServerWriter<v1::StatsSnapshot>* writer) override;

  // Ends running streams, so the server can shut down.
  void stop() { stopping_.store(true); }

 private:
  void fill_status(v1::GetStatusResponse* out, bool with_capabilities) const;
  // The clients a selector names; a status other than OK when there are none.
  grpc::Status select(const v1::ClientSelector& selector,
                      std::vector<std::shared_ptr<Client>>* out) const;

  ControlContext ctx_;
  std::atomic<bool> stopping_{false};
};

class ControlServer {
 public:
  explicit ControlServer(ControlContext context) : service_(std::move(context)) {}
  ~ControlServer() { stop(); }

  // Listens on options.control_path (and control_tcp when set).
  Result<void> start(const Options& options);
  void stop();

 private:
  ControlService service_;
  std::unique_ptr<grpc::Server> server_;
  std::string path_;
};

}  // namespace extmem::daemon
