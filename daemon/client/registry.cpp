#include "client/registry.hpp"

namespace extmem::daemon {

void ClientRegistry::add(std::shared_ptr<Client> client) {
  std::lock_guard lock(mu_);
  uint64_t id = client->id();
  clients_.emplace(id, std::move(client));
}

std::shared_ptr<Client> ClientRegistry::find(uint64_t id) const {
  std::lock_guard lock(mu_);
  auto it = clients_.find(id);
  return it == clients_.end() ? nullptr : it->second;
}

std::shared_ptr<Client> ClientRegistry::remove(uint64_t id) {
  std::lock_guard lock(mu_);
  auto it = clients_.find(id);
  if (it == clients_.end()) return nullptr;
  auto client = std::move(it->second);
  clients_.erase(it);
  return client;
}

std::vector<std::shared_ptr<Client>> ClientRegistry::snapshot() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<Client>> out;
  out.reserve(clients_.size());
  for (const auto& [id, client] : clients_) out.push_back(client);
  return out;
}

size_t ClientRegistry::size() const {
  std::lock_guard lock(mu_);
  return clients_.size();
}

MemoryTotals memory_totals(const std::vector<std::shared_ptr<Client>>& clients) {
  MemoryTotals totals;
  for (const auto& client : clients) {
    std::lock_guard lock(client->mu);
    totals.resident_pages += client->pages.resident_pages();
    totals.swapped_pages += client->pages.swapped_pages();
  }
  return totals;
}

}  // namespace extmem::daemon
