// FileMapping and GgufFile's accessors; the parser is in gguf_parser.cpp.
#include "gguf/gguf_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "util/error.h"
#include "util/huge_pages.h"
#include "util/memory_info.h"

namespace bifurcate::gguf {

uint64_t TensorInfo::n_elements() const {
  uint64_t n = 1;
  for (uint64_t d : dims) n *= d;  // the parser guarantees this does not overflow
  return n;
}

uint64_t TensorInfo::n_rows() const {
  uint64_t n = 1;
  for (std::size_t i = 1; i < dims.size(); ++i) n *= dims[i];
  return n;
}

// ---------------------------------------------------------------- FileMapping

namespace {

constexpr std::size_t kHugeCopyMinBytes = std::size_t(64) << 20;

// Reads all `size` bytes of fd into dst; false (errno set) on a read error or early end.
bool read_all(int fd, uint8_t* dst, std::size_t size) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n =
        ::pread(fd, dst + done, std::min<std::size_t>(size - done, std::size_t(1) << 30), off_t(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;  // the file shrank under us
      return false;
    }
    done += std::size_t(n);
  }
  return true;
}

}  // namespace

// A pipe (`-m <(zstd -dc model.gguf.zst)`, a FIFO being filled) cannot be
// mapped and has no size: read it to its end into anonymous memory that
// doubles as it fills. More than the available memory is an error, not a
// machine brought down by an endless stream.
void FileMapping::read_stream(int fd, const std::string& path) {
  const std::size_t limit = available_memory_bytes();
  std::size_t capacity = std::size_t(64) << 20;
  void* region = ::mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED) throw Error(str(path, ": cannot allocate ", capacity, " bytes to read the pipe"));
  std::size_t size = 0;
  auto fail = [&](const std::string& why) {
    ::munmap(region, capacity);
    ::close(fd);
    throw Error(str(path, ": ", why));
  };
  for (;;) {
    if (size == capacity) {
      if (capacity * 2 > limit) fail(str("the pipe holds more than the ", limit >> 20, " MiB of available memory"));
      void* grown = ::mremap(region, capacity, capacity * 2, MREMAP_MAYMOVE);
      if (grown == MAP_FAILED) fail(str("cannot grow the buffer to ", (capacity * 2) >> 20, " MiB: ", std::strerror(errno)));
      region = grown;
      capacity *= 2;
    }
    const ssize_t n = ::read(fd, static_cast<uint8_t*>(region) + size, capacity - size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(str("cannot read: ", std::strerror(errno)));
    if (n == 0) break;
    size += std::size_t(n);
  }
  ::mprotect(region, capacity, PROT_READ);
  region_ = region;
  region_bytes_ = capacity;
  data_ = static_cast<const uint8_t*>(region);
  size_ = size;
  copied_ = true;
}

FileMapping::FileMapping(const std::string& path, FileResidency residency) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(str(path, ": cannot open: ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw Error(str(path, ": cannot stat: ", std::strerror(err)));
  }
  if (S_ISFIFO(st.st_mode)) {
    read_stream(fd, path);
    ::close(fd);
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(str(path, ": not a regular file or a pipe"));
  }
  size_ = std::size_t(st.st_size);
  if (residency == FileResidency::huge_pages && size_ >= kHugeCopyMinBytes &&
      size_ <= available_memory_bytes() / 2) {
    // A reservation one huge page larger, so the copy can start 2 MiB-aligned.
    region_bytes_ = round_up_to_huge_pages(size_) + kHugePageBytes;
    region_ = ::mmap(nullptr, region_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region_ != MAP_FAILED) {
      auto* start = reinterpret_cast<uint8_t*>(
          round_up_to_huge_pages(reinterpret_cast<uintptr_t>(region_)));  // without THP: an ordinary copy
      advise_huge_pages(start, round_up_to_huge_pages(size_));
      if (read_all(fd, start, size_)) {
        ::mprotect(region_, region_bytes_, PROT_READ);
        data_ = start;
        copied_ = true;
        ::close(fd);
        return;
      }
      int err = errno;
      ::munmap(region_, region_bytes_);
      ::close(fd);
      region_ = nullptr;
      throw Error(str(path, ": cannot read ", size_, " bytes: ", std::strerror(err)));
    }
  }
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw Error(str(path, ": cannot mmap ", size_, " bytes: ", std::strerror(err)));
    }
    data_ = static_cast<const uint8_t*>(p);
    region_ = p;
    region_bytes_ = size_;
  }
  ::close(fd);  // the mapping stays valid without the descriptor
}

FileMapping::FileMapping(FileMapping&& other) noexcept
    : data_(other.data_),
      size_(other.size_),
      region_(other.region_),
      region_bytes_(other.region_bytes_),
      copied_(other.copied_) {
  other.data_ = nullptr;
  other.size_ = 0;
  other.region_ = nullptr;
  other.region_bytes_ = 0;
}

FileMapping& FileMapping::operator=(FileMapping&& other) noexcept {
  if (this != &other) {
    if (region_ != nullptr) ::munmap(region_, region_bytes_);
    data_ = other.data_;
    size_ = other.size_;
    region_ = other.region_;
    region_bytes_ = other.region_bytes_;
    copied_ = other.copied_;
    other.data_ = nullptr;
    other.size_ = 0;
    other.region_ = nullptr;
    other.region_bytes_ = 0;
  }
  return *this;
}

FileMapping::~FileMapping() {
  if (region_ != nullptr) ::munmap(region_, region_bytes_);
}

// ------------------------------------------------------------------ metadata

const Value* GgufFile::find(std::string_view key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

const Value& GgufFile::require_key(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) throw Error(str(path_, ": metadata key '", key, "' is missing"));
  return *v;
}

// Runs `get(value)` and prefixes a type mismatch with the file and key.
template <class Get>
decltype(auto) GgufFile::get_checked(std::string_view key, Get get) const {
  const Value& v = require_key(key);
  try {
    return get(v);
  } catch (const Error& e) {
    throw Error(str(path_, ": metadata key '", key, "': ", e.what()));
  }
}

uint64_t GgufFile::get_uint(std::string_view key) const {
  return get_checked(key, [](const Value& v) { return v.as_uint(); });
}
int64_t GgufFile::get_int(std::string_view key) const {
  return get_checked(key, [](const Value& v) { return v.as_int(); });
}
double GgufFile::get_float(std::string_view key) const {
  return get_checked(key, [](const Value& v) { return v.as_float(); });
}
bool GgufFile::get_bool(std::string_view key) const {
  return get_checked(key, [](const Value& v) { return v.as_bool(); });
}
const std::string& GgufFile::get_string(std::string_view key) const {
  return get_checked(key, [](const Value& v) -> const std::string& { return v.as_string(); });
}
const std::vector<Value>& GgufFile::get_array(std::string_view key) const {
  return get_checked(key, [](const Value& v) -> const std::vector<Value>& { return v.as_array(); });
}

uint64_t GgufFile::get_uint_or(std::string_view key, uint64_t fallback) const {
  return find(key) ? get_uint(key) : fallback;
}
int64_t GgufFile::get_int_or(std::string_view key, int64_t fallback) const {
  return find(key) ? get_int(key) : fallback;
}
double GgufFile::get_float_or(std::string_view key, double fallback) const {
  return find(key) ? get_float(key) : fallback;
}
bool GgufFile::get_bool_or(std::string_view key, bool fallback) const {
  return find(key) ? get_bool(key) : fallback;
}
std::string GgufFile::get_string_or(std::string_view key, std::string_view fallback) const {
  return find(key) ? get_string(key) : std::string(fallback);
}

// ------------------------------------------------------------------- tensors

const TensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& GgufFile::tensor(std::string_view name) const {
  const TensorInfo* t = find_tensor(name);
  if (t == nullptr)
    throw Error(str(path_, ": tensor '", name, "' not found (file has ", tensors_.size(), " tensors)"));
  return *t;
}

}  // namespace bifurcate::gguf
