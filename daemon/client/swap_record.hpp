// SwapRecord: what a client's swap holds, kept where a restarted daemon finds it. If
// extmemd dies, the application's resident pages live on in its memfd (the shim keeps
// its descriptors), but which holes are pages in swap, and where, was only in the dead
// daemon's heap. This record keeps exactly that, in a named shared-memory segment
// (Boost.Interprocess, /dev/shm/extmem.SWAPDEV.SWAPINO.PID.START): per 2 MiB chunk its
// swap cluster and a bit per page that is in swap; plus a versioned, checksummed header
// that identifies the client and the descriptors to take back (by inode). Records are
// named after the swap file their pages are in, so a daemon only ever finds the records
// of its predecessors on the same swap file (which one daemon at a time holds).
//
// Order of writes that keeps it truthful across a crash at any instant: a page's bit is
// set before its memory is punched out (a set bit over data still in the memfd means
// "resident": the memfd wins), and cleared only after the page is back in memory.
//
// The header keeps the terms the client registered with; terms changed later (extmemctl
// set-limit, set-policy) go to two slots after the chunks, written alternately, each with
// a sequence number and a checksum: a daemon killed while writing one leaves the other
// intact. A record without the slots (written by an older extmemd) is read as before.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "extmem/kernel/result.hpp"

namespace extmem::daemon {

struct SwapRecordHeader {
  static constexpr char kMagic[8] = {'E', 'X', 'T', 'M', 'S', 'W', 'P', '1'};
  static constexpr uint32_t kVersion = 1;

  char magic[8] = {};
  uint32_t version = 0;
  uint32_t header_bytes = 0;
  int32_t pid = 0;
  uint32_t uid = 0;
  uint64_t start_time = 0;  // /proc/PID/stat field 22: tells a reused pid apart
  uint64_t arena_base = 0;
  uint64_t arena_size = 0;
  uint64_t uffd_device = 0;  // the descriptors to take back from the process
  uint64_t uffd_inode = 0;
  uint64_t memfd_device = 0;
  uint64_t memfd_inode = 0;
  uint64_t swap_device = 0;  // st_dev and st_ino of the swap file the slots are in
  uint64_t swap_inode = 0;
  uint64_t limit_pages = 0;
  uint64_t min_pages = 0;
  uint32_t weight = 0;
  char policy[32] = {};
  uint32_t checksum = 0;  // of every byte above
};

// Terms changed after registration, as a restarted daemon should apply them.
struct SwapRecordTerms {
  uint64_t limit_pages = 0;
  uint64_t min_pages = 0;
  uint32_t weight = 0;
  char policy[32] = {};
};

class SwapRecord {
 public:
  static constexpr uint64_t kChunkPages = 512;
  static constexpr uint32_t kNoCluster = UINT32_MAX;

  // Creates (replacing a stale one) the record of a new client.
  static Result<std::unique_ptr<SwapRecord>> create(const SwapRecordHeader& identity);
  // Opens an existing record by segment name, checking magic, version, size and checksum.
  static Result<std::unique_ptr<SwapRecord>> open(const std::string& name);
  // Names of the records of pages in the swap file (dev, ino), for recovery at start.
  static std::vector<std::string> list(uint64_t swap_device, uint64_t swap_inode);

  ~SwapRecord();
  SwapRecord(const SwapRecord&) = delete;
  SwapRecord& operator=(const SwapRecord&) = delete;

  const SwapRecordHeader& header() const { return *header_; }
  const std::string& name() const { return name_; }

  bool in_swap(uint64_t page) const {
    return (chunks_[page / kChunkPages].in_swap[page % kChunkPages / 64] >> (page % 64)) & 1;
  }
  void set_in_swap(uint64_t page, bool in_swap);
  uint32_t cluster(uint64_t chunk) const { return chunks_[chunk].cluster_plus_one - 1; }
  void set_cluster(uint64_t chunk, uint32_t cluster) {
    chunks_[chunk].cluster_plus_one = cluster + 1;
  }
  uint64_t chunk_count() const { return chunk_count_; }

  // The terms a restarted daemon applies: the newest intact slot's, else the header's.
  SwapRecordTerms terms() const;
  // Saves changed terms into the older slot. Callers serialize (the client's lock).
  void save_terms(const SwapRecordTerms& terms);

  // Deletes the segment (the client left for good).
  void remove();

 private:
  struct Chunk {
    uint32_t cluster_plus_one;  // 0: none, so a fresh (zero) segment holds no cluster
    uint32_t reserved;
    uint64_t in_swap[kChunkPages / 64];
  };
  struct TermsSlot {
    uint64_t sequence;  // 0: never written
    SwapRecordTerms terms;
    uint32_t checksum;  // of the sequence and the terms
  };
  struct Segment;
  SwapRecord(std::string name, std::unique_ptr<Segment> segment, bool has_terms_slots);

  std::string name_;
  std::unique_ptr<Segment> segment_;
  SwapRecordHeader* header_ = nullptr;
  Chunk* chunks_ = nullptr;
  uint64_t chunk_count_ = 0;
  TermsSlot* slots_ = nullptr;  // two, or none in an older daemon's record
};

uint32_t swap_record_checksum(const SwapRecordHeader& header);

}  // namespace extmem::daemon
