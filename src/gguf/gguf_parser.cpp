// Parses a mapped GGUF file into GgufFile (format summary in gguf_file.h).
// Invariant: nothing is read, allocated or reserved for a count, length or
// size before it is checked against the bytes left in the file.
#include <algorithm>
#include <cstring>
#include <limits>

#include "gguf/gguf_file.h"
#include "util/error.h"
#include "util/printable.h"

namespace bifurcate::gguf {
namespace {

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr int kMaxArrayDepth = 16;  // nested arrays deeper than this are rejected, bounding recursion
// A Value is ~48 bytes but an element may be encoded in 1: reserving more than
// this up front would let a small count-checked file demand a huge allocation.
// Beyond it the vector grows only as elements are actually parsed.
constexpr uint64_t kMaxArrayReserve = uint64_t(1) << 20;
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;              // empty key, type, smallest value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // empty name, n_dims, one dim, type, offset
constexpr uint64_t kMaxElements = uint64_t(std::numeric_limits<int64_t>::max());  // ggml counts in int64

// Smallest encoding of one value of `type`, so `count` elements need at
// least count * this many bytes.
uint64_t min_value_bytes(ValueType type) {
  switch (type) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::Bool: return 1;
    case ValueType::U16:
    case ValueType::I16: return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32: return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64:
    case ValueType::String: return 8;
    case ValueType::Array: return 4 + 8;
  }
  return 1;
}

std::string format_dims(const std::vector<uint64_t>& dims) {
  std::string out = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) out += str(i ? ", " : "", dims[i]);
  return out + "]";
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t limit, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out) || *out > limit;
}

}  // namespace

class GgufParser {
 public:
  explicit GgufParser(GgufFile& file)
      : file_(file), base_(file.mapping_.data()), size_(file.mapping_.size()) {}

  void parse() {
    parse_header();
    parse_metadata();
    read_alignment();
    parse_tensor_infos();
    place_tensor_data();
  }

 private:
  // ------------------------------------------------------------ primitives

  template <class... Args>
  [[noreturn]] void fail(Args&&... args) const {
    if (context_.empty()) throw Error(str(file_.path_, ": ", std::forward<Args>(args)...));
    throw Error(str(file_.path_, ": ", context_, ": ", std::forward<Args>(args)...));
  }

  uint64_t remaining() const { return size_ - pos_; }

  void need(uint64_t n, std::string_view what) const {
    if (n > remaining()) {
      fail("file truncated: ", what, " needs ", n, " bytes at offset ", pos_, " but the file has ", size_, " bytes");
    }
  }

  template <class T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));  // GGUF is little-endian, as is every target we build for
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(std::string_view what) {
    uint64_t len = read<uint64_t>(what);
    if (len > remaining()) {
      fail(what, " string length ", len, " at offset ", pos_ - 8, " exceeds the ", remaining(),
           " bytes left in the file (", size_, " bytes)");
    }
    std::string s(reinterpret_cast<const char*>(base_ + pos_), std::size_t(len));
    pos_ += len;
    return s;
  }

  ValueType read_value_type(std::string_view what) {
    uint32_t raw = read<uint32_t>(what);
    if (!is_valid_value_type(raw)) fail("unknown ", what, " id ", raw, " (valid ids are 0..", kValueTypeCount - 1, ")");
    return ValueType(raw);
  }

  // ---------------------------------------------------------------- values

  Value read_value(ValueType type, int depth) {
    switch (type) {
      case ValueType::U8: return Value::u8(read<uint8_t>("u8 value"));
      case ValueType::I8: return Value::i8(read<int8_t>("i8 value"));
      case ValueType::U16: return Value::u16(read<uint16_t>("u16 value"));
      case ValueType::I16: return Value::i16(read<int16_t>("i16 value"));
      case ValueType::U32: return Value::u32(read<uint32_t>("u32 value"));
      case ValueType::I32: return Value::i32(read<int32_t>("i32 value"));
      case ValueType::U64: return Value::u64(read<uint64_t>("u64 value"));
      case ValueType::I64: return Value::i64(read<int64_t>("i64 value"));
      case ValueType::F32: return Value::f32(read<float>("f32 value"));
      case ValueType::F64: return Value::f64(read<double>("f64 value"));
      case ValueType::Bool: return Value::boolean(read<uint8_t>("bool value") != 0);
      case ValueType::String: return Value::string(read_string("value"));
      case ValueType::Array: return read_array(depth + 1);
    }
    fail("unknown value type id ", uint32_t(type));
  }

  Value read_array(int depth) {
    if (depth > kMaxArrayDepth) fail("arrays nested deeper than ", kMaxArrayDepth, " levels");
    ValueType element_type = read_value_type("array element type");
    uint64_t count = read<uint64_t>("array count");
    uint64_t min_bytes = min_value_bytes(element_type);
    if (count > remaining() / min_bytes) {
      fail("array count ", count, " of ", value_type_name(element_type), " at offset ", pos_ - 8, " needs at least ",
           min_bytes, " bytes each but only ", remaining(), " bytes are left in the file");
    }
    std::vector<Value> elements;
    elements.reserve(std::size_t(std::min(count, kMaxArrayReserve)));
    for (uint64_t i = 0; i < count; ++i) elements.push_back(read_value(element_type, depth));
    return Value::array(element_type, std::move(elements));
  }

  // ---------------------------------------------------------------- header

  void parse_header() {
    if (size_ == 0) fail("file is empty, not a GGUF file");
    need(4, "magic");
    if (std::memcmp(base_, kMagic, 4) != 0) {
      std::string seen(reinterpret_cast<const char*>(base_), 4);
      for (char& c : seen) {
        if (c < 0x20 || c > 0x7e) c = '?';
      }
      fail("bad magic '", seen, "' (expected 'GGUF'): not a GGUF file");
    }
    pos_ = 4;
    uint32_t version = read<uint32_t>("version");
    if (version == 1) fail("GGUF version 1 is not supported (it used 32-bit counts); only versions 2 and 3 are");
    if (version != 2 && version != 3) {
      fail("unsupported GGUF version ", version, " (only versions 2 and 3 are supported",
           (version & 0xffff) == 0 ? "; a big-endian file?" : "", ")");
    }
    file_.version_ = version;
    tensor_count_ = read<uint64_t>("tensor count");
    kv_count_ = read<uint64_t>("metadata count");
    if (kv_count_ > remaining() / kMinKvBytes) {
      fail("metadata count ", kv_count_, " cannot fit in the ", remaining(), " bytes left in the file");
    }
    if (tensor_count_ > remaining() / kMinTensorInfoBytes) {
      fail("tensor count ", tensor_count_, " cannot fit in the ", remaining(), " bytes left in the file");
    }
  }

  void parse_metadata() {
    file_.metadata_.reserve(std::size_t(kv_count_));
    for (uint64_t i = 0; i < kv_count_; ++i) {
      context_ = str("metadata entry ", i, " of ", kv_count_);
      std::string key = read_string("key");
      context_ = str("metadata key '", printable(key), "'");
      auto [it, inserted] = file_.metadata_index_.emplace(key, std::size_t(i));
      if (!inserted) fail("duplicate metadata key (entries ", it->second, " and ", i, ")");
      ValueType type = read_value_type("value type");
      Value value = read_value(type, 0);
      file_.metadata_.emplace_back(std::move(key), std::move(value));
    }
    context_.clear();
  }

  void read_alignment() {
    const Value* v = file_.find("general.alignment");
    if (v == nullptr) return;
    context_ = "metadata key 'general.alignment'";
    if (v->type() != ValueType::U32) fail("has type ", value_type_name(v->type()), ", expected u32");
    uint64_t a = v->as_uint();
    if (a == 0 || (a & (a - 1)) != 0) fail("alignment ", a, " is not a power of two");
    file_.alignment_ = uint32_t(a);
    context_.clear();
  }

  // --------------------------------------------------------------- tensors

  void parse_tensor_infos() {
    file_.tensors_.reserve(std::size_t(tensor_count_));
    for (uint64_t i = 0; i < tensor_count_; ++i) {
      context_ = str("tensor info ", i, " of ", tensor_count_);
      TensorInfo t;
      t.name = read_string("name");
      context_ = str("tensor '", printable(t.name), "'");
      auto [it, inserted] = file_.tensor_index_.emplace(t.name, std::size_t(i));
      if (!inserted) fail("duplicate tensor name (tensors ", it->second, " and ", i, ")");
      read_shape(t);
      file_.tensors_.push_back(std::move(t));
    }
    context_.clear();
  }

  // Reads n_dims, dims, type and offset; computes n_bytes without overflow.
  void read_shape(TensorInfo& t) {
    uint32_t n_dims = read<uint32_t>("n_dims");
    if (n_dims == 0 || n_dims > kMaxDims) fail("n_dims ", n_dims, " is outside 1..", kMaxDims);
    uint64_t n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      t.dims.push_back(read<uint64_t>("dimension"));
      if (mul_overflows(n_elements, t.dims.back(), kMaxElements, &n_elements)) {
        fail("dims ", format_dims(t.dims), " overflow: more than 2^63-1 elements");
      }
    }
    uint32_t raw_type = read<uint32_t>("ggml type");
    std::optional<GgmlTypeTraits> traits = ggml_type_traits(raw_type);
    if (!traits) fail("unknown ggml type id ", raw_type);
    t.type = traits->type;
    if (t.dims[0] % traits->block_size != 0) {
      fail("row length ", t.dims[0], " is not a multiple of the ", traits->name, " block size ", traits->block_size);
    }
    uint64_t row_bytes = ggml_row_bytes(*traits, t.dims[0]);
    if (mul_overflows(row_bytes, t.n_rows(), std::numeric_limits<uint64_t>::max(), &t.n_bytes)) {
      fail("size of ", traits->name, " dims ", format_dims(t.dims), " overflows 64 bits");
    }
    t.offset = read<uint64_t>("offset");
    if (t.offset % file_.alignment_ != 0) {
      fail("offset ", t.offset, " is not a multiple of the alignment ", file_.alignment_);
    }
  }

  // The data section starts at the first aligned offset after the tensor
  // infos; every tensor's bytes must lie inside the file.
  void place_tensor_data() {
    uint64_t a = file_.alignment_;
    uint64_t data_offset = (pos_ + a - 1) / a * a;  // pos_ <= size_ and a <= 2^31: no overflow
    file_.data_offset_ = data_offset;
    for (TensorInfo& t : file_.tensors_) {
      bool inside = data_offset <= size_ && t.offset <= size_ - data_offset &&
                    t.n_bytes <= size_ - data_offset - t.offset;
      if (!inside) {
        fail("tensor '", t.name, "': data [offset ", t.offset, ", +", t.n_bytes, " bytes] extends past end of file (",
             size_, " bytes; data section starts at ", data_offset, ")");
      }
      t.data = base_ + data_offset + t.offset;
    }
  }

  GgufFile& file_;
  const uint8_t* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t tensor_count_ = 0;
  uint64_t kv_count_ = 0;
  std::string context_;  // what is being read, for error messages: "metadata key 'x'"
};

GgufFile GgufFile::open(const std::string& path, FileResidency residency) {
  GgufFile file(path, FileMapping(path, residency));
  GgufParser(file).parse();
  return file;
}

}  // namespace bifurcate::gguf
