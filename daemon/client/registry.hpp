// All connected clients, by id. Holders of a shared_ptr keep a client alive while they
// work on it, so a client leaving never pulls state from under a fault handler.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "client/client.hpp"

namespace extmem::daemon {

class ClientRegistry {
 public:
  uint64_t next_id() { return ++last_id_; }
  void add(std::shared_ptr<Client> client);
  std::shared_ptr<Client> find(uint64_t id) const;
  // Removes and returns the client; nullptr if another thread removed it first.
  std::shared_ptr<Client> remove(uint64_t id);
  std::vector<std::shared_ptr<Client>> snapshot() const;
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<Client>> clients_;
  std::atomic<uint64_t> last_id_{0};
};

// Pages in memory and in swap over a set of clients.
struct MemoryTotals {
  uint64_t resident_pages = 0;
  uint64_t swapped_pages = 0;
};
MemoryTotals memory_totals(const std::vector<std::shared_ptr<Client>>& clients);

}  // namespace extmem::daemon
