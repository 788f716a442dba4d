#include "gguf/gguf_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "gguf/gguf_file.h"
#include "util/aligned_buffer.h"
#include "util/error.h"

namespace bifurcate::gguf {
namespace {

constexpr std::string_view kAlignmentKey = "general.alignment";

uint64_t align_up(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

// Little-endian encoder for the header (targets are little-endian, so a
// plain byte copy is the file's encoding).
class HeaderEncoder {
 public:
  template <class T>
  void put(T v) {
    append(&v, sizeof(T));
  }
  void put_string(std::string_view s) {
    put<uint64_t>(s.size());
    append(s.data(), s.size());
  }
  void put_value(const Value& v) {
    switch (v.type()) {
      case ValueType::U8: put<uint8_t>(uint8_t(v.as_uint())); break;
      case ValueType::I8: put<int8_t>(int8_t(v.as_int())); break;
      case ValueType::U16: put<uint16_t>(uint16_t(v.as_uint())); break;
      case ValueType::I16: put<int16_t>(int16_t(v.as_int())); break;
      case ValueType::U32: put<uint32_t>(uint32_t(v.as_uint())); break;
      case ValueType::I32: put<int32_t>(int32_t(v.as_int())); break;
      case ValueType::U64: put<uint64_t>(v.as_uint()); break;
      case ValueType::I64: put<int64_t>(v.as_int()); break;
      case ValueType::F32: put<float>(float(v.as_float())); break;
      case ValueType::F64: put<double>(v.as_float()); break;
      case ValueType::Bool: put<uint8_t>(v.as_bool() ? 1 : 0); break;
      case ValueType::String: put_string(v.as_string()); break;
      case ValueType::Array:
        put<uint32_t>(uint32_t(v.array_type()));
        put<uint64_t>(v.as_array().size());
        for (const Value& e : v.as_array()) put_value(e);
        break;
    }
  }
  void pad_to(uint64_t alignment) { bytes_.resize(align_up(bytes_.size(), alignment), 0); }
  std::vector<uint8_t> take() { return std::move(bytes_); }

 private:
  void append(const void* data, std::size_t n) {
    if (n == 0) return;
    std::size_t at = bytes_.size();
    bytes_.resize(at + n);
    std::memcpy(bytes_.data() + at, data, n);
  }

  std::vector<uint8_t> bytes_;
};

// Closes the FILE and deletes the .tmp file unless released.
struct TmpFile {
  std::FILE* file;
  std::string path;
  bool keep = false;
  ~TmpFile() {
    if (file != nullptr) std::fclose(file);
    if (!keep) std::remove(path.c_str());
  }
};

void write_bytes(std::FILE* out, const uint8_t* data, std::size_t n, const std::string& path) {
  if (n > 0 && std::fwrite(data, 1, n, out) != n) {
    throw Error(str(path, ": write of ", n, " bytes failed: ", std::strerror(errno)));
  }
}

}  // namespace

uint64_t tensor_n_bytes(GgmlType type, const std::vector<uint64_t>& dims) {
  const GgmlTypeTraits& traits = ggml_type_traits(type);
  require(!dims.empty() && dims.size() <= kMaxDims, "tensor has ", dims.size(), " dims, expected 1..", kMaxDims);
  require(dims[0] % traits.block_size == 0, "row length ", dims[0], " is not a multiple of the ", traits.name,
          " block size ", traits.block_size);
  uint64_t n = ggml_row_bytes(traits, dims[0]);
  for (std::size_t i = 1; i < dims.size(); ++i) {
    require(!__builtin_mul_overflow(n, dims[i], &n), "tensor size overflows 64 bits (dim ", i, " = ", dims[i], ")");
  }
  return n;
}

void GgufWriter::set(std::string key, Value value) {
  if (key == kAlignmentKey) {
    require(value.type() == ValueType::U32, kAlignmentKey, " must be u32, got ", value_type_name(value.type()));
    set_alignment(uint32_t(value.as_uint()));
    return;
  }
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(std::move(key), std::move(value));
}

void GgufWriter::set_alignment(uint32_t alignment) {
  require(alignment != 0 && (alignment & (alignment - 1)) == 0, "alignment ", alignment, " is not a power of two");
  alignment_ = alignment;
  std::erase_if(metadata_, [](const auto& kv) { return kv.first == kAlignmentKey; });
  if (alignment != kDefaultAlignment) metadata_.emplace_back(std::string(kAlignmentKey), Value::u32(alignment));
}

void GgufWriter::add_tensor(std::string name, std::vector<uint64_t> dims, GgmlType type,
                            std::function<void(uint8_t* dst)> fill) {
  for (const PendingTensor& t : tensors_) require(t.name != name, "duplicate tensor name '", name, "'");
  uint64_t n_bytes;
  try {
    n_bytes = tensor_n_bytes(type, dims);
  } catch (const Error& e) {
    throw Error(str("tensor '", name, "': ", e.what()));
  }
  require(bool(fill), "tensor '", name, "': no fill function");
  tensors_.push_back(PendingTensor{std::move(name), std::move(dims), type, n_bytes, std::move(fill)});
}

void GgufWriter::add_tensor(std::string name, std::vector<uint64_t> dims, GgmlType type,
                            std::span<const uint8_t> bytes) {
  uint64_t expected = tensor_n_bytes(type, dims);
  require(bytes.size() == expected, "tensor '", name, "': got ", bytes.size(), " bytes, ",
          ggml_type_traits(type).name, " dims need ", expected);
  auto copy = std::make_shared<std::vector<uint8_t>>(bytes.begin(), bytes.end());
  add_tensor(std::move(name), std::move(dims), type,
             [copy](uint8_t* dst) { std::memcpy(dst, copy->data(), copy->size()); });
}

std::vector<uint64_t> GgufWriter::tensor_offsets() const {
  std::vector<uint64_t> offsets;
  uint64_t end = 0;
  for (const PendingTensor& t : tensors_) {
    offsets.push_back(align_up(end, alignment_));
    require(!__builtin_add_overflow(offsets.back(), t.n_bytes, &end), "tensor '", t.name, "': data section overflows");
  }
  return offsets;
}

std::vector<uint8_t> GgufWriter::encode_header(const std::vector<uint64_t>& offsets) const {
  HeaderEncoder enc;
  enc.put<uint32_t>(0x46554747);  // "GGUF" read as a little-endian u32
  enc.put<uint32_t>(3);
  enc.put<uint64_t>(tensors_.size());
  enc.put<uint64_t>(metadata_.size());
  for (const auto& [key, value] : metadata_) {
    enc.put_string(key);
    enc.put<uint32_t>(uint32_t(value.type()));
    enc.put_value(value);
  }
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const PendingTensor& t = tensors_[i];
    enc.put_string(t.name);
    enc.put<uint32_t>(uint32_t(t.dims.size()));
    for (uint64_t d : t.dims) enc.put<uint64_t>(d);
    enc.put<uint32_t>(uint32_t(t.type));
    enc.put<uint64_t>(offsets[i]);
  }
  enc.pad_to(alignment_);
  return enc.take();
}

// Streams each tensor through one buffer, zero padding between tensors and
// after the last, so the file ends on an alignment boundary.
void GgufWriter::write_tensors(std::FILE* out, const std::vector<uint64_t>& offsets,
                               const std::string& tmp_path) const {
  uint64_t largest = 0;
  for (const PendingTensor& t : tensors_) largest = std::max(largest, t.n_bytes);
  AlignedBuffer<uint8_t> buffer(largest);
  const std::vector<uint8_t> zeros(alignment_, 0);
  uint64_t written = 0;
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const PendingTensor& t = tensors_[i];
    write_bytes(out, zeros.data(), offsets[i] - written, tmp_path);
    buffer.resize(t.n_bytes);
    t.fill(buffer.data());
    write_bytes(out, buffer.data(), t.n_bytes, tmp_path);
    written = offsets[i] + t.n_bytes;
  }
  write_bytes(out, zeros.data(), align_up(written, alignment_) - written, tmp_path);
}

void require_replaceable_output(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    throw Error(str(path, ": cannot check the output path: ", std::strerror(errno)));
  }
  if (S_ISREG(st.st_mode)) return;
  const char* kind = S_ISLNK(st.st_mode)    ? "a symbolic link"
                     : S_ISDIR(st.st_mode)  ? "a directory"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISBLK(st.st_mode)  ? "a block device"
                     : S_ISFIFO(st.st_mode) ? "a FIFO"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                                            : "not a regular file";
  throw Error(str(path, ": the output exists and is ", kind,
                  "; refusing to replace it (give a new path or an existing regular file)"));
}

void GgufWriter::write(const std::string& path) const {
  require_replaceable_output(path);
  // A fresh temporary name (mkstemp: O_EXCL), so a file or link already at
  // "<path>.tmp" is never written through.
  std::string tmp_path = path + ".tmp.XXXXXX";
  const int fd = mkstemp(tmp_path.data());
  if (fd < 0) throw Error(str(path, ": cannot create a temporary file beside it: ", std::strerror(errno)));
  TmpFile tmp{fdopen(fd, "wb"), tmp_path};
  if (tmp.file == nullptr) {
    const int error = errno;
    close(fd);
    throw Error(str(tmp_path, ": cannot open: ", std::strerror(error)));
  }
  fchmod(fd, 0644);  // mkstemp makes 0600; a model file is as readable as any other
  std::vector<uint64_t> offsets = tensor_offsets();
  std::vector<uint8_t> header = encode_header(offsets);
  write_bytes(tmp.file, header.data(), header.size(), tmp_path);
  write_tensors(tmp.file, offsets, tmp_path);
  std::FILE* f = tmp.file;
  tmp.file = nullptr;
  if (std::fclose(f) != 0) throw Error(str(tmp_path, ": close failed: ", std::strerror(errno)));
  require_replaceable_output(path);  // again: it may have changed while the file was written
  if (std::rename(tmp_path.c_str(), path.c_str()) != 0) {
    throw Error(str(tmp_path, ": cannot rename to ", path, ": ", std::strerror(errno)));
  }
  tmp.keep = true;
}

}  // namespace bifurcate::gguf
