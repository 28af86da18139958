#include "server/client_checks.hpp"

#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "client/client.hpp"

namespace extmem::daemon {

namespace {

template <typename Id>
bool contains(const std::vector<Id>& ids, Id id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

void ClientAccess::update(const Options& options) {
  auto lists = std::make_shared<const Lists>(Lists{options.allowed_users, options.allowed_groups});
  std::lock_guard lock(mu_);
  lists_ = std::move(lists);
}

Result<void> ClientAccess::check(const kernel::PeerCredentials& peer) const {
  std::shared_ptr<const Lists> lists;
  {
    std::lock_guard lock(mu_);
    lists = lists_;
  }
  if (peer.uid == 0 || (lists->users.empty() && lists->groups.empty())) return {};
  if (contains(lists->users, peer.uid) || contains(lists->groups, peer.gid)) return {};
  if (!lists->groups.empty()) {
    auto groups = supplementary_groups(peer.pid);
    if (!groups) return groups.error();
    for (gid_t group : *groups) {
      if (contains(lists->groups, group)) return {};
    }
  }
  return Error::make(EPERM,
                     "uid %u is not allowed to use extmem (security.allowed_users/allowed_groups)",
                     peer.uid);
}

Result<std::vector<gid_t>> supplementary_groups(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  std::ifstream status(path);
  if (!status) return Error::make(ESRCH, "cannot read %s", path);
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream numbers(line.substr(strlen("Groups:")));
    std::vector<gid_t> groups;
    for (gid_t group; numbers >> group;) groups.push_back(group);
    return groups;
  }
  return Error::make(EIO, "no Groups: line in %s", path);
}

Result<void> check_arena_bounds(uint64_t base, uint64_t size) {
  constexpr uint64_t kUserSpaceEnd = 1ULL << 47;
  if (size == 0) return Error::make(EINVAL, "arena %#" PRIx64 "+0 is empty", base);
  if (base % kPageSize != 0 || size % kPageSize != 0) {
    return Error::make(EINVAL, "arena %#" PRIx64 "+%#" PRIx64 " is not page aligned", base, size);
  }
  if (size > kMaxArenaSize) {
    return Error::make(EINVAL, "arena of %" PRIu64 " bytes exceeds the maximum of %" PRIu64, size,
                       kMaxArenaSize);
  }
  if (base == 0 || base >= kUserSpaceEnd || size > kUserSpaceEnd - base) {
    return Error::make(EINVAL, "arena %#" PRIx64 "+%#" PRIx64 " is outside user space", base, size);
  }
  return {};
}

Result<std::vector<FileMapping>> file_mappings(pid_t pid, dev_t dev, ino_t ino) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/maps", pid);
  FILE* maps = fopen(path, "re");
  if (maps == nullptr) return Error::from_errno("open %s", path);
  std::vector<FileMapping> found;
  char line[512];
  bool at_line_start = true;
  while (fgets(line, sizeof(line), maps) != nullptr) {
    // A line longer than `line` ends with a file name, which any process chooses: read on
    // as if it were a line, it could pass for an entry mapping the memfd over the arena.
    const bool line_start = at_line_start;
    at_line_start = strchr(line, '\n') != nullptr;
    if (!line_start) continue;
    uint64_t start, end, offset, inode;
    unsigned major_no, minor_no;
    char perms[8];
    if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %" SCNx64 " %x:%x %" SCNu64, &start, &end, perms,
               &offset, &major_no, &minor_no, &inode) == 7 &&
        inode == ino && major_no == major(dev) && minor_no == minor(dev)) {
      found.push_back({start, end, offset, perms[0] == 'r' && perms[1] == 'w' && perms[3] == 's'});
    }
  }
  fclose(maps);
  return found;
}

Result<void> check_arena_mapping(pid_t pid, const kernel::Memfd& memfd, uint64_t base,
                                 uint64_t size) {
  dev_t dev;
  ino_t ino;
  if (auto id = memfd.identity(&dev, &ino); !id) return id.error();
  auto memfd_size = memfd.size();
  if (!memfd_size) return memfd_size.error();
  if (*memfd_size < size) {
    return Error::make(EINVAL, "memfd of %zu bytes is smaller than the %" PRIu64 "-byte arena",
                       *memfd_size, size);
  }

  auto mappings = file_mappings(pid, dev, ino);
  if (!mappings) return mappings.error();
  uint64_t covered_to = base;  // [base, covered_to) is proven mapped
  for (const FileMapping& m : *mappings) {
    if (m.start != covered_to) continue;
    if (!m.shared_writable || m.offset != m.start - base) break;
    covered_to = m.end;
    if (covered_to >= base + size) break;
  }
  if (covered_to < base + size) {
    return Error::make(EPERM,
                       "process %d does not map the memfd shared and writable over the arena "
                       "%#" PRIx64 "+%#" PRIx64,
                       pid, base, size);
  }
  return {};
}

Result<void> check_uffd_controls_arena(kernel::Userfaultfd& uffd, kernel::Memfd& memfd,
                                       uint64_t base) {
  alignas(4096) static thread_local unsigned char page[kPageSize];
  uint64_t nonce = std::random_device{}() | (static_cast<uint64_t>(std::random_device{}()) << 32);
  memset(page, 0, sizeof(page));
  memcpy(page, &nonce, sizeof(nonce));
  auto copied = uffd.copy(base, page, kPageSize, 0);
  if (!copied) return copied.error();
  if (*copied != kernel::Outcome::kDone) {
    return Error::make(EPERM, "the arena's first page could not be filled (%s)",
                       kernel::outcome_name(*copied));
  }
  uint64_t seen = 0;
  auto n = memfd.read_at(&seen, sizeof(seen), 0);
  if (!n) return n.error();
  if (*n != sizeof(seen) || seen != nonce) {
    return Error::make(EPERM, "the userfaultfd does not control the memory the memfd backs");
  }
  return {};
}

std::string executable_name(pid_t pid) {
  char path[64], target[4096];
  snprintf(path, sizeof(path), "/proc/%d/exe", pid);
  ssize_t n = readlink(path, target, sizeof(target) - 1);
  if (n > 0) {
    target[n] = '\0';
    const char* slash = strrchr(target, '/');
    return slash != nullptr ? slash + 1 : target;
  }
  snprintf(path, sizeof(path), "/proc/%d/comm", pid);
  std::ifstream comm(path);
  std::string name;
  std::getline(comm, name);
  return name.empty() ? "?" : name;
}

}  // namespace extmem::daemon
