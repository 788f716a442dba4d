// Shared by the gguf_* tests: scratch file paths, reading a file back, and a
// byte builder for hand-encoded GGUF files.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace bifurcate::gguf::test_support {

inline std::string temp_path(const std::string& name) {
  std::filesystem::path dir = std::filesystem::path(BIFURCATE_BINARY_DIR) / "gguf_test_tmp";
  std::filesystem::create_directories(dir);
  return (dir / (std::to_string(::getpid()) + "_" + name)).string();
}

inline std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Little-endian builder for hand-made (possibly invalid) files, independent of
// the writer's encoder.
struct Bytes {
  std::vector<uint8_t> v;
  Bytes& le(uint64_t x, int n) {
    for (int i = 0; i < n; ++i) v.push_back(uint8_t(x >> (8 * i)));
    return *this;
  }
  Bytes& u32(uint32_t x) { return le(x, 4); }
  Bytes& u64(uint64_t x) { return le(x, 8); }
  Bytes& f32(float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    return le(bits, 4);
  }
  Bytes& str(const std::string& s) {
    u64(s.size());
    v.insert(v.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    v.insert(v.end(), {'G', 'G', 'U', 'F'});
    u32(version);
    u64(n_tensors);
    return u64(n_kv);
  }
  Bytes& kv_u32(const std::string& key, uint32_t value) { return str(key).u32(4).u32(value); }
  Bytes& tensor_info(const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    str(name).u32(uint32_t(dims.size()));
    for (uint64_t d : dims) u64(d);
    return u32(type).u64(offset);
  }
  Bytes& pad(std::size_t alignment) {
    while (v.size() % alignment) v.push_back(0);
    return *this;
  }
  Bytes& zeros(std::size_t n) {
    v.insert(v.end(), n, 0);
    return *this;
  }
};

}  // namespace bifurcate::gguf::test_support
