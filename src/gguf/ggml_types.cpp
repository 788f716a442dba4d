#include "gguf/ggml_types.h"

#include <array>

#include "util/error.h"

namespace bifurcate::gguf {
namespace {

constexpr std::array kTraits = {
    GgmlTypeTraits{GgmlType::F32, "F32", 1, 4},
    GgmlTypeTraits{GgmlType::F16, "F16", 1, 2},
    GgmlTypeTraits{GgmlType::Q4_0, "Q4_0", 32, 18},
    GgmlTypeTraits{GgmlType::Q4_1, "Q4_1", 32, 20},
    GgmlTypeTraits{GgmlType::Q5_0, "Q5_0", 32, 22},
    GgmlTypeTraits{GgmlType::Q5_1, "Q5_1", 32, 24},
    GgmlTypeTraits{GgmlType::Q8_0, "Q8_0", 32, 34},
    GgmlTypeTraits{GgmlType::Q8_1, "Q8_1", 32, 36},
    GgmlTypeTraits{GgmlType::Q2_K, "Q2_K", 256, 84},
    GgmlTypeTraits{GgmlType::Q3_K, "Q3_K", 256, 110},
    GgmlTypeTraits{GgmlType::Q4_K, "Q4_K", 256, 144},
    GgmlTypeTraits{GgmlType::Q5_K, "Q5_K", 256, 176},
    GgmlTypeTraits{GgmlType::Q6_K, "Q6_K", 256, 210},
    GgmlTypeTraits{GgmlType::Q8_K, "Q8_K", 256, 292},
    GgmlTypeTraits{GgmlType::I8, "I8", 1, 1},
    GgmlTypeTraits{GgmlType::I16, "I16", 1, 2},
    GgmlTypeTraits{GgmlType::I32, "I32", 1, 4},
    GgmlTypeTraits{GgmlType::I64, "I64", 1, 8},
    GgmlTypeTraits{GgmlType::F64, "F64", 1, 8},
    GgmlTypeTraits{GgmlType::BF16, "BF16", 1, 2},
};

}  // namespace

std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t raw) {
  for (const auto& t : kTraits) {
    if (uint32_t(t.type) == raw) return t;
  }
  return std::nullopt;
}

const GgmlTypeTraits& ggml_type_traits(GgmlType type) {
  for (const auto& t : kTraits) {
    if (t.type == type) return t;
  }
  throw Error(str("unknown ggml type id ", uint32_t(type)));
}

}  // namespace bifurcate::gguf
