// Read-only access to a GGUF file (versions 2 and 3), memory-mapped.
//
// Layout (all little-endian):
//   "GGUF"  u32 version  u64 tensor_count  u64 metadata_kv_count
//   metadata_kv_count × { string key, u32 value_type, value }
//   tensor_count × { string name, u32 n_dims (≤ 4), u64 dims[n_dims],
//                    u32 ggml_type, u64 offset (relative to the data section) }
//   zero padding up to a multiple of `general.alignment` (u32, default 32)
//   data section: each tensor at its offset (a multiple of the alignment),
//                 ggml_row_bytes(type, dims[0]) * dims[1] * dims[2] * dims[3] bytes
// where string = u64 length + bytes (no terminator), and an array value is
// u32 element_type + u64 count + elements (arrays may nest).
//
// The file is untrusted: every count, length, type id, dimension, offset and
// size is checked against the bytes actually present before it is used, and
// each failure is an Error "<path>: <what is wrong, with the values>".
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gguf/ggml_types.h"
#include "gguf/gguf_value.h"

namespace bifurcate::gguf {

inline constexpr uint32_t kDefaultAlignment = 32;
inline constexpr uint32_t kMaxDims = 4;

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // dims[0] = row length (fastest varying), ggml's order; 1..4 entries
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;  // relative to the data section
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  // into the mapping; valid while the GgufFile lives

  uint64_t n_elements() const;
  uint64_t n_rows() const;  // product of dims[1..]: n_elements / dims[0]
};

// How a file's bytes are held in memory.
enum class FileResidency {
  mapped,      // mmap: pages come on demand (metadata readers, vocabularies)
  huge_pages,  // model weights: read into anonymous memory on transparent huge
               // pages when the file is >= 64 MiB and fits half the available
               // memory, else mapped. Decode streams every weight once per
               // step; through 4 KiB pages (a TLB miss every 4 KiB of every row
               // stream) it measured 4-7 % slower per step, 10-17 % per matmul,
               // and this kernel cannot collapse a file mapping into huge pages.
};

// A whole file, read-only in memory; released on destruction.
class FileMapping {
 public:
  // A regular file is mapped (or copied, see FileResidency); a pipe (FIFO)
  // is read to its end. Throws Error naming the path and errno text.
  explicit FileMapping(const std::string& path, FileResidency residency = FileResidency::mapped);
  FileMapping(FileMapping&& other) noexcept;
  FileMapping& operator=(FileMapping&& other) noexcept;
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;
  ~FileMapping();

  const uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  bool copied() const { return copied_; }  // read into anonymous memory (FileResidency::huge_pages)

 private:
  const uint8_t* data_ = nullptr;  // nullptr for an empty file
  std::size_t size_ = 0;
  void* region_ = nullptr;  // what munmap releases: the mapping, or the copy's reservation
  std::size_t region_bytes_ = 0;
  bool copied_ = false;

  void read_stream(int fd, const std::string& path);
};

class GgufFile {
 public:
  static GgufFile open(const std::string& path, FileResidency residency = FileResidency::mapped);

  GgufFile(GgufFile&&) noexcept = default;
  GgufFile& operator=(GgufFile&&) noexcept = default;
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  std::size_t file_size() const { return mapping_.size(); }
  uint64_t data_offset() const { return data_offset_; }  // file offset of the data section

  const std::vector<std::pair<std::string, Value>>& metadata() const { return metadata_; }  // file order
  const Value* find(std::string_view key) const;  // nullptr if absent

  // Typed getters: Error "<path>: metadata key '<key>' is missing" or
  // "<path>: metadata key '<key>': value has type X, expected Y".
  uint64_t get_uint(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;
  const std::vector<Value>& get_array(std::string_view key) const;
  // Default when absent; a present key of the wrong type is still an Error.
  uint64_t get_uint_or(std::string_view key, uint64_t fallback) const;
  int64_t get_int_or(std::string_view key, int64_t fallback) const;
  double get_float_or(std::string_view key, double fallback) const;
  bool get_bool_or(std::string_view key, bool fallback) const;
  std::string get_string_or(std::string_view key, std::string_view fallback) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // file order
  const TensorInfo* find_tensor(std::string_view name) const;          // nullptr if absent
  const TensorInfo& tensor(std::string_view name) const;               // Error naming tensor and file

 private:
  friend class GgufParser;
  GgufFile(std::string path, FileMapping mapping) : path_(std::move(path)), mapping_(std::move(mapping)) {}
  const Value& require_key(std::string_view key) const;
  template <class Get>
  decltype(auto) get_checked(std::string_view key, Get get) const;

  std::string path_;
  FileMapping mapping_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::vector<TensorInfo> tensors_;
  // Name → index; keys are copies so moving the vectors never invalidates them.
  std::map<std::string, std::size_t, std::less<>> metadata_index_;
  std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

}  // namespace bifurcate::gguf
