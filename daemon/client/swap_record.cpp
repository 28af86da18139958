#include "client/swap_record.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

namespace extmem::daemon {

namespace bip = boost::interprocess;

namespace {

std::string prefix(uint64_t swap_device, uint64_t swap_inode) {
  return "extmem." + std::to_string(swap_device) + "." + std::to_string(swap_inode) + ".";
}
constexpr uint64_t kChunkBytes = SwapRecord::kChunkPages * 4096;

uint64_t header_space() {
  return (sizeof(SwapRecordHeader) + 63) / 64 * 64;
}

uint64_t chunk_count_of(uint64_t arena_size) {
  return (arena_size + kChunkBytes - 1) / kChunkBytes;
}

// FNV-1a: catches a torn or foreign header or slot, which is all it is for.
uint32_t fnv1a(const void* data, size_t len) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  uint32_t hash = 2166136261u;
  for (size_t i = 0; i < len; ++i) hash = (hash ^ bytes[i]) * 16777619u;
  return hash;
}

}  // namespace

struct SwapRecord::Segment {
  bip::shared_memory_object shm;
  bip::mapped_region region;
};

uint32_t swap_record_checksum(const SwapRecordHeader& header) {
  return fnv1a(&header, offsetof(SwapRecordHeader, checksum));
}

SwapRecord::SwapRecord(std::string name, std::unique_ptr<Segment> segment, bool has_terms_slots)
    : name_(std::move(name)), segment_(std::move(segment)) {
  auto* base = static_cast<unsigned char*>(segment_->region.get_address());
  header_ = reinterpret_cast<SwapRecordHeader*>(base);
  chunks_ = reinterpret_cast<Chunk*>(base + header_space());
  chunk_count_ = chunk_count_of(header_->arena_size);
  if (has_terms_slots) slots_ = reinterpret_cast<TermsSlot*>(chunks_ + chunk_count_);
}

SwapRecordTerms SwapRecord::terms() const {
  SwapRecordTerms terms{header_->limit_pages, header_->min_pages, header_->weight, {}};
  memcpy(terms.policy, header_->policy, sizeof(terms.policy));
  uint64_t newest = 0;
  for (int i = 0; slots_ != nullptr && i < 2; ++i) {
    const TermsSlot& slot = slots_[i];
    if (slot.sequence > newest && slot.checksum == fnv1a(&slot, offsetof(TermsSlot, checksum))) {
      newest = slot.sequence;
      terms = slot.terms;
    }
  }
  terms.policy[sizeof(terms.policy) - 1] = '\0';
  return terms;
}

void SwapRecord::save_terms(const SwapRecordTerms& terms) {
  if (slots_ == nullptr) return;
  const uint64_t sequence = std::max(slots_[0].sequence, slots_[1].sequence) + 1;
  TermsSlot slot{sequence, terms, 0};
  slot.checksum = fnv1a(&slot, offsetof(TermsSlot, checksum));
  // Into the older slot: until this write is whole, the newer one is what a restarted
  // daemon reads.
  slots_[sequence % 2] = slot;
}

SwapRecord::~SwapRecord() = default;

Result<std::unique_ptr<SwapRecord>> SwapRecord::create(const SwapRecordHeader& identity) {
  const std::string name = prefix(identity.swap_device, identity.swap_inode) +
                           std::to_string(identity.pid) + "." + std::to_string(identity.start_time);
  const uint64_t chunks = chunk_count_of(identity.arena_size);
  try {
    bip::shared_memory_object::remove(name.c_str());
    auto segment = std::make_unique<Segment>();
    segment->shm = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write,
                                             bip::permissions(0600));
    // Sparse: only the parts of the record that are written take memory.
    segment->shm.truncate(static_cast<bip::offset_t>(header_space() + chunks * sizeof(Chunk) +
                                                     2 * sizeof(TermsSlot)));
    segment->region = bip::mapped_region(segment->shm, bip::read_write);
    auto* header = static_cast<SwapRecordHeader*>(segment->region.get_address());
    *header = identity;
    memcpy(header->magic, SwapRecordHeader::kMagic, sizeof(header->magic));
    header->version = SwapRecordHeader::kVersion;
    header->header_bytes = sizeof(SwapRecordHeader);
    header->checksum = swap_record_checksum(*header);
    return std::unique_ptr<SwapRecord>(new SwapRecord(name, std::move(segment), true));
  } catch (const bip::interprocess_exception& e) {
    bip::shared_memory_object::remove(name.c_str());
    return Error::make(e.get_native_error() != 0 ? e.get_native_error() : EIO, "swap record %s: %s",
                       name.c_str(), e.what());
  }
}

Result<std::unique_ptr<SwapRecord>> SwapRecord::open(const std::string& name) {
  try {
    auto segment = std::make_unique<Segment>();
    segment->shm = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_write);
    bip::offset_t size = 0;
    if (!segment->shm.get_size(size) || static_cast<uint64_t>(size) < header_space()) {
      return Error::make(EBADMSG, "swap record %s is truncated", name.c_str());
    }
    segment->region = bip::mapped_region(segment->shm, bip::read_write);
    const auto* header = static_cast<const SwapRecordHeader*>(segment->region.get_address());
    if (memcmp(header->magic, SwapRecordHeader::kMagic, sizeof(header->magic)) != 0 ||
        header->header_bytes != sizeof(SwapRecordHeader)) {
      return Error::make(EBADMSG, "%s is not an extmem swap record", name.c_str());
    }
    if (header->version != SwapRecordHeader::kVersion) {
      return Error::make(EPROTONOSUPPORT, "swap record %s has version %u (this extmemd reads %u)",
                         name.c_str(), header->version, SwapRecordHeader::kVersion);
    }
    if (header->checksum != swap_record_checksum(*header)) {
      return Error::make(EBADMSG, "swap record %s has a bad checksum", name.c_str());
    }
    const uint64_t chunks_end = header_space() + chunk_count_of(header->arena_size) * sizeof(Chunk);
    if (static_cast<uint64_t>(size) < chunks_end) {
      return Error::make(EBADMSG, "swap record %s is shorter than its arena", name.c_str());
    }
    const bool has_terms_slots = static_cast<uint64_t>(size) >= chunks_end + 2 * sizeof(TermsSlot);
    return std::unique_ptr<SwapRecord>(new SwapRecord(name, std::move(segment), has_terms_slots));
  } catch (const bip::interprocess_exception& e) {
    return Error::make(e.get_native_error() != 0 ? e.get_native_error() : EIO, "swap record %s: %s",
                       name.c_str(), e.what());
  }
}

std::vector<std::string> SwapRecord::list(uint64_t swap_device, uint64_t swap_inode) {
  const std::string wanted = prefix(swap_device, swap_inode);
  std::vector<std::string> names;
  std::error_code error;
  // shm_open's namespace, where Boost.Interprocess puts named segments on Linux.
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", error)) {
    std::string name = entry.path().filename();
    if (name.starts_with(wanted)) names.push_back(std::move(name));
  }
  return names;
}

void SwapRecord::set_in_swap(uint64_t page, bool in_swap) {
  uint64_t& word = chunks_[page / kChunkPages].in_swap[page % kChunkPages / 64];
  const uint64_t bit = uint64_t{1} << (page % 64);
  // A store to shared memory survives our death at once; the system call that punches
  // (or restores) the page comes after it in program order, and the compiler cannot
  // move a store across an opaque call.
  word = in_swap ? word | bit : word & ~bit;
}

void SwapRecord::remove() {
  bip::shared_memory_object::remove(name_.c_str());
}

}  // namespace extmem::daemon
