// The choice of instruction-set path (kernels/isa.h) and the per-path tables.
#include "kernels/isa.h"

#include <gtest/gtest.h>

#include <string>

#include "kernels/isa_kernels.h"
#include "util/error.h"

namespace bifurcate::kernels {
namespace {

std::string error_of(const char* env, Isa cpu) {
  try {
    choose_isa(env, cpu);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Isa, UnsetOrEmptyChoosesTheCpusWidestPath) {
  EXPECT_EQ(choose_isa(nullptr, Isa::avx512vnni), Isa::avx512vnni);
  EXPECT_EQ(choose_isa("", Isa::avx512), Isa::avx512);
  EXPECT_EQ(choose_isa(nullptr, Isa::avx2), Isa::avx2);
}

TEST(Isa, TheVariableForcesANarrowerOrEqualPath) {
  EXPECT_EQ(choose_isa("avx2", Isa::avx512vnni), Isa::avx2);
  EXPECT_EQ(choose_isa("avx512", Isa::avx512vnni), Isa::avx512);
  EXPECT_EQ(choose_isa("avx512vnni", Isa::avx512vnni), Isa::avx512vnni);
  EXPECT_EQ(choose_isa("avx2", Isa::avx2), Isa::avx2);
}

TEST(Isa, AWiderPathOrAnUnknownNameIsAnErrorNamingTheVariable) {
  const std::string wider = error_of("avx512", Isa::avx2);
  EXPECT_NE(wider.find("BIFURCATE_ISA=avx512"), std::string::npos) << wider;
  EXPECT_NE(wider.find("up to avx2"), std::string::npos) << wider;
  EXPECT_NE(error_of("avx512vnni", Isa::avx512).find("BIFURCATE_ISA"), std::string::npos);
  for (const char* bad : {"AVX2", "avx", "sse4", "avx2 "}) {
    const std::string unknown = error_of(bad, Isa::avx512vnni);
    EXPECT_NE(unknown.find("BIFURCATE_ISA"), std::string::npos) << bad;
    EXPECT_NE(unknown.find("avx2, avx512 or avx512vnni"), std::string::npos) << unknown;
  }
}

TEST(Isa, NamesRoundTrip) {
  for (Isa isa : {Isa::avx2, Isa::avx512, Isa::avx512vnni}) EXPECT_EQ(parse_isa(isa_name(isa)), isa);
  EXPECT_FALSE(parse_isa("avx512f").has_value());
}

// Each runnable path's table is that path's own compilation (its kernels
// were compiled with that path's instructions), and the active one is runnable.
TEST(Isa, EveryRunnablePathHasItsOwnTable) {
  const auto runnable = runnable_isas();
  ASSERT_FALSE(runnable.empty());
  EXPECT_EQ(runnable.front(), Isa::avx2);
  EXPECT_EQ(runnable.back(), cpu_isa());
  EXPECT_LE(active_isa(), cpu_isa());
  for (Isa isa : runnable) {
    SCOPED_TRACE(isa_name(isa));
    EXPECT_EQ(isa_kernels(isa).isa, isa);
    EXPECT_NE(isa_kernels(isa).matmul_shared_input, nullptr);
  }
  for (Isa a : runnable) {
    for (Isa b : runnable) {
      if (a != b) {
        EXPECT_NE(isa_kernels(a).attend_segment, isa_kernels(b).attend_segment);
      }
    }
  }
}

}  // namespace
}  // namespace bifurcate::kernels
