// Builds a GGUF v3 file (layout in gguf_file.h). Metadata and tensor
// descriptions are collected first; write() then emits the header and
// streams each tensor's bytes through one reusable buffer, so the largest
// buffer is the largest single tensor, never the whole file.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "gguf/ggml_types.h"
#include "gguf/gguf_value.h"

namespace bifurcate::gguf {

// Bytes of a tensor of `type` with `dims` (dims[0] = row length); Error if
// dims[0] is not a multiple of the block size or the size overflows.
uint64_t tensor_n_bytes(GgmlType type, const std::vector<uint64_t>& dims);

// Error unless `path` is absent or a regular file (lstat: a symbolic link is
// refused, not followed): what GgufWriter::write may replace. Cheap, so
// callers check before long work.
void require_replaceable_output(const std::string& path);

class GgufWriter {
 public:
  // Replaces an existing key (keeping its position). "general.alignment"
  // must be a u32 and sets the alignment, as set_alignment does.
  void set(std::string key, Value value);
  // A nonzero power of two; general.alignment is written when it is not 32.
  void set_alignment(uint32_t alignment);
  uint32_t alignment() const { return alignment_; }

  // `fill(dst)` is called once during write() with tensor_n_bytes(type, dims)
  // bytes to fill, all of which it must write; dst is 64-byte aligned. Error on a duplicate name, 0 or > 4 dims, or a row length
  // that is not a multiple of the type's block size.
  void add_tensor(std::string name, std::vector<uint64_t> dims, GgmlType type,
                  std::function<void(uint8_t* dst)> fill);
  // Copies `bytes` (for small tensors; stream big ones with `fill`); its size
  // must equal tensor_n_bytes(type, dims).
  void add_tensor(std::string name, std::vector<uint64_t> dims, GgmlType type, std::span<const uint8_t> bytes);

  // Writes to a fresh path + ".tmp.XXXXXX", then renames over `path`; Error
  // on I/O failure (the temporary file is removed), and Error up front when
  // `path` exists and is not a regular file: a device, FIFO, directory or
  // symbolic link is never replaced.
  void write(const std::string& path) const;

 private:
  struct PendingTensor {
    std::string name;
    std::vector<uint64_t> dims;
    GgmlType type;
    uint64_t n_bytes;
    std::function<void(uint8_t* dst)> fill;
  };

  std::vector<uint64_t> tensor_offsets() const;  // in the data section, each aligned
  std::vector<uint8_t> encode_header(const std::vector<uint64_t>& offsets) const;
  void write_tensors(std::FILE* out, const std::vector<uint64_t>& offsets, const std::string& tmp_path) const;

  uint32_t alignment_ = 32;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace bifurcate::gguf
