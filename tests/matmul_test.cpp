// matmul against a float64 reference computed from the dequantized weights,
// for every supported weight type, awkward shapes, 1 and 2 threads.
#include "kernels/matmul.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "kernels/amx.h"
#include "tensor/dtype.h"
#include "util/aligned_alloc.h"
#include "util/error.h"

#include "counting_new.h"  // g_allocations

namespace bifurcate::kernels {
namespace {

using gguf::GgmlType;

struct EncodedWeights {
  std::vector<uint8_t> bytes;
  std::vector<float> dequantized;  // [rows][cols], what the kernel must multiply by
};

EncodedWeights make_weights(GgmlType type, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.5f);
  std::vector<float> w(size_t(rows * cols));
  for (auto& v : w) v = dist(rng);
  const int64_t rb = tensor::row_bytes(type, cols);
  EncodedWeights out{std::vector<uint8_t>(size_t(rows * rb)), std::vector<float>(w.size())};
  for (int64_t r = 0; r < rows; ++r) {
    tensor::quantize_row(type, &w[size_t(r * cols)], &out.bytes[size_t(r * rb)], cols);
    tensor::dequantize_row(type, &out.bytes[size_t(r * rb)], &out.dequantized[size_t(r * cols)], cols);
  }
  return out;
}

// One scratch for the whole file: each call grows it as needed.
MatmulScratch& scratch() {
  static MatmulScratch s;
  return s;
}

// Every instruction-set path this CPU runs (whatever BIFURCATE_ISA says:
// the kernel tests check each path by name).
std::span<const Isa> isas() { return runnable_isas(); }

// The activations the integer path multiplies by (matmul.h,
// matmul_quantizes_activations): per 256-element superblock of each row,
// dx = amax / 127 and q = round-half-even(x * (127 / amax)), both in f32;
// x̂ = dx * q. Written here from the documented rule, not the kernel's code.
struct QuantizedActivations {
  std::vector<double> xhat;       // [batch][cols]
  std::vector<double> half_step;  // [batch][cols]: dx / 2, the rounding bound of each element
};
QuantizedActivations quantize_like_matmul(const std::vector<float>& x, int64_t batch, int64_t cols) {
  QuantizedActivations out{std::vector<double>(x.size()), std::vector<double>(x.size())};
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t k0 = 0; k0 < cols; k0 += 256) {
      const int64_t k1 = std::min(cols, k0 + 256);
      float amax = 0.0f;
      for (int64_t k = k0; k < k1; ++k) amax = std::max(amax, std::fabs(x[size_t(b * cols + k)]));
      const float dx = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
      for (int64_t k = k0; k < k1; ++k) {
        const size_t i = size_t(b * cols + k);
        out.xhat[i] = double(dx) * std::nearbyint(x[i] * inv);
        out.half_step[i] = double(dx) / 2;
      }
    }
  }
  return out;
}

// y[b][r] against a float64 sum over the dequantized weights, relative to
// the sum of |terms| (cancellation cannot be blamed on the kernel).
// With quantized activations (the integer path) the reference multiplies by
// x̂ instead, so only f32 summation separates kernel and reference; the
// kernel sums the scale and the offset parts of each weight separately,
// each up to a few times sum |w x̂| for 4-6 bit levels, hence 3e-5 instead
// of 1e-5 (a one-ulp f16 scale error moves a sum by ~1e-3 of a block's
// share and fails it: docs/perf-notes.md Q1 records the injection).
// Also checked then: |y - x·w| <= sum_k |w_k| dx_k / 2 (each x̂_k is within
// dx_k / 2 of x_k, so the product can be off by at most that), plus the same
// f32 allowance.
void expect_matches_reference(const EncodedWeights& w, const std::vector<float>& x,
                              const std::vector<float>& y, int64_t rows, int64_t cols, int64_t batch,
                              bool quantized_x = false) {
  const QuantizedActivations xq = quantized_x ? quantize_like_matmul(x, batch, cols) : QuantizedActivations{};
  const double f32_tolerance = quantized_x ? 3e-5 : 1e-5;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t r = 0; r < rows; ++r) {
      double want = 0, magnitude = 0, exact = 0, rounding_bound = 0;
      for (int64_t k = 0; k < cols; ++k) {
        const size_t xi = size_t(b * cols + k);
        const double wk = w.dequantized[size_t(r * cols + k)];
        const double xk = quantized_x ? xq.xhat[xi] : double(x[xi]);
        want += xk * wk;
        magnitude += std::fabs(xk * wk);
        exact += double(x[xi]) * wk;
        if (quantized_x) rounding_bound += std::fabs(wk) * xq.half_step[xi];
      }
      const double got = y[size_t(b * rows + r)];
      const double allowance = f32_tolerance * std::max(magnitude, 1e-30);
      ASSERT_LE(std::fabs(got - want), allowance) << "b=" << b << " r=" << r;
      if (quantized_x) {
        ASSERT_LE(std::fabs(got - exact), rounding_bound + allowance) << "b=" << b << " r=" << r;
      }
    }
  }
}

void check_matmul(GgmlType type, int64_t rows, int64_t cols, int64_t batch, ThreadPool& pool,
                  Isa isa = active_isa()) {
  SCOPED_TRACE(testing::Message() << gguf::ggml_type_traits(type).name << " rows=" << rows << " cols=" << cols
                                  << " batch=" << batch << " threads=" << pool.size()
                                  << " isa=" << isa_name(isa));
  auto w = make_weights(type, rows, cols, uint32_t(rows * 131 + cols * 7 + batch));
  std::mt19937 rng(uint32_t(batch * 17 + cols));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(size_t(batch * cols));
  for (auto& v : x) v = dist(rng);
  std::vector<float> y(size_t(batch * rows), -12345.0f);
  matmul(WeightMatrix{w.bytes.data(), type, rows, cols}, x.data(), batch, y.data(), pool, scratch(), isa);
  expect_matches_reference(w, x, y, rows, cols, batch, matmul_quantizes_activations(type, isa));
}

struct TypeCase {
  GgmlType type;
  std::vector<int64_t> cols;
};

TEST(Matmul, AllTypesAwkwardShapes) {
  const std::vector<TypeCase> cases = {
      {GgmlType::F32, {1, 7, 32, 77, 600}}, {GgmlType::F16, {3, 8, 33, 64, 1030}},
      {GgmlType::BF16, {5, 32, 520}},       {GgmlType::Q8_0, {32, 64, 256 + 32, 544}},
      {GgmlType::Q4_0, {32, 96, 544}},      {GgmlType::Q4_1, {32, 288}},
      {GgmlType::Q5_0, {64, 320}},          {GgmlType::Q5_1, {96, 256}},
      {GgmlType::Q4_K, {256, 768}},         {GgmlType::Q5_K, {256, 512}},
      {GgmlType::Q6_K, {256, 768}},
  };
  ThreadPool one(1), two(2);
  for (Isa isa : isas()) {
    for (const auto& c : cases) {
      for (int64_t cols : c.cols) {
        for (int64_t rows : {1, 7, 33, 100}) {
          for (int64_t batch : {1, 2, 3, 5, 17, 33}) {
            check_matmul(c.type, rows, cols, batch, (rows + batch) % 2 ? one : two, isa);
          }
        }
      }
    }
  }
}

TEST(Matmul, EveryBatchUpTo70BothPathsAndIsas) {
  // F16/Q8_0 take the direct path (every tile height and batch-group tail),
  // BF16 the packed one (panel K-blocks, batch-group tails); 53 and 101 rows
  // are not multiples of any tile height or task size.
  ThreadPool one(1), two(2);
  for (Isa isa : isas()) {
    for (int64_t batch = 1; batch <= 70; ++batch) {
      check_matmul(GgmlType::F16, batch % 2 ? 53 : 101, 96 + 8, batch, batch % 3 ? two : one, isa);
      check_matmul(GgmlType::Q8_0, batch % 2 ? 101 : 53, 160, batch, batch % 3 ? one : two, isa);
      check_matmul(GgmlType::BF16, batch % 2 ? 53 : 101, 40, batch, batch % 3 ? one : two, isa);
    }
    check_matmul(GgmlType::F32, 29, 45, 70, two, isa);
    check_matmul(GgmlType::Q4_K, 29, 512, 70, one, isa);
  }
}

TEST(Matmul, PrefillBatchManyTasksAndKBlocks) {
  // More rows than one packed task (96) and K past one K-block (1024), with a
  // ragged last block, at a prefill-sized batch; and the direct path at the
  // same sizes.
  ThreadPool two(2);
  for (Isa isa : isas()) {
    check_matmul(GgmlType::BF16, 200, 1024 + 256 + 8, 100, two, isa);
    check_matmul(GgmlType::Q4_0, 197, 2048 + 32, 65, two, isa);
    check_matmul(GgmlType::F16, 200, 1024 + 256 + 8, 100, two, isa);
    check_matmul(GgmlType::Q8_0, 197, 2048 + 32, 65, two, isa);
  }
}

TEST(Matmul, DecodeBatchesInterleavedXAcrossKBlocks) {
  // Rows of a multiple of 16 take the AVX-512 8-row tiles over interleaved x
  // (groups of 8 batch rows, then 4-row tiles for the rest) in 1024-wide
  // K-blocks: 2080 columns give two full blocks and a short third; 67 rows
  // end in a partial chunk and a partial 3-row tile; batch 64 is the largest
  // with 8-row tiles, 65 the first without.
  ThreadPool one(1), two(2);
  for (Isa isa : isas()) {
    for (int64_t batch : {8, 9, 12, 15, 16, 17, 23, 24, 31, 32, 40, 64, 65}) {
      check_matmul(GgmlType::F16, 67, 2048 + 32, batch, batch % 2 ? one : two, isa);
      check_matmul(GgmlType::Q8_0, 67, 2048 + 32, batch, batch % 2 ? two : one, isa);
    }
    check_matmul(GgmlType::F32, 50, 1024 + 16, 19, two, isa);
  }
}

// Each wider path against the AVX2 one (on an AVX2-only CPU there is none to
// compare: the loop is empty rather than skipped, as CI's no-skips rule needs).
TEST(Matmul, WiderPathsAgreeCloselyWithAvx2) {
  ThreadPool two(2);
  for (Isa isa : isas().subspan(1)) {
    for (int64_t batch : {1, 4, 32, 40}) {
      SCOPED_TRACE(testing::Message() << "batch=" << batch << " isa=" << isa_name(isa));
      auto w = make_weights(GgmlType::F16, 70, 768, 9);
      std::vector<float> x(size_t(batch * 768));
      for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::cos(double(i) * 0.37));
      std::vector<float> wide(size_t(batch * 70)), narrow(wide.size());
      WeightMatrix wm{w.bytes.data(), GgmlType::F16, 70, 768};
      matmul(wm, x.data(), batch, wide.data(), two, scratch(), isa);
      matmul(wm, x.data(), batch, narrow.data(), two, scratch(), Isa::avx2);
      for (size_t i = 0; i < wide.size(); ++i)
        ASSERT_NEAR(wide[i], narrow[i], 1e-4f * (1.0f + std::fabs(narrow[i])));
    }
  }
}

TEST(Matmul, OneAndTwoThreadsAgreeExactly) {
  // Threads split output rows, so every output is summed in the same order.
  for (GgmlType type : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_K}) {
    for (int64_t batch : {2, 9, 40}) {
      auto w = make_weights(type, 130, 1280, 3);  // > 1024: batch 40 takes the outer path
      std::vector<float> x(size_t(batch * 1280));
      for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::sin(double(i)));
      std::vector<float> y1(size_t(batch * 130)), y2(y1.size());
      ThreadPool one(1), two(2);
      WeightMatrix wm{w.bytes.data(), type, 130, 1280};
      matmul(wm, x.data(), batch, y1.data(), one, scratch());
      matmul(wm, x.data(), batch, y2.data(), two, scratch());
      EXPECT_EQ(y1, y2);
    }
  }
}

TEST(Matmul, QuantBatchOneIsTheSameSumAsSmallBatches) {
  // Batch 1 runs its own row loop (AVX-512, superblocks unpacked in
  // registers: matmul_quant_stream.cpp); it must give each row exactly what
  // the panel tiles give that row within a batch of 2-4 (same operations,
  // same order). The 32-element block types end in a short superblock (96
  // of 256 elements: masked loads there).
  ThreadPool two(2);
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q4_0, GgmlType::Q4_1,
                        GgmlType::Q5_0, GgmlType::Q5_1}) {
    SCOPED_TRACE(gguf::ggml_type_traits(type).name);
    const int64_t rows = 37, cols = gguf::ggml_type_traits(type).block_size == 256 ? 1024 + 256 : 1024 + 256 + 96;
    auto w = make_weights(type, rows, cols, 21);
    std::vector<float> x(size_t(4 * cols));
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::sin(double(i) * 0.61));
    const WeightMatrix wm{w.bytes.data(), type, rows, cols};
    for (int64_t batch = 2; batch <= 4; ++batch) {
      std::vector<float> many(size_t(batch * rows));
      matmul(wm, x.data(), batch, many.data(), two, scratch());
      for (int64_t b = 0; b < batch; ++b) {
        std::vector<float> one(static_cast<size_t>(rows));
        matmul(wm, x.data() + b * cols, 1, one.data(), two, scratch());
        EXPECT_EQ(one, std::vector<float>(many.begin() + b * rows, many.begin() + (b + 1) * rows))
            << "batch " << batch << " row " << b;
      }
    }
  }
}

TEST(Matmul, QuantLanesEveryBatchTileAndRowGroup) {
  // Batches above 4 take the 16-weight-rows-in-lanes path with AVX512-VNNI
  // (matmul_quant_lanes.cpp): tiles of 8 batch rows plus a tail of 1-7; 37
  // rows end in a group of 5 lanes. Q4_0 at 544 columns has a short last
  // superblock (built generically after two fused ones); Q4_1 and Q5_K are
  // always built generically, Q4_K, Q6_K and Q4_0 from their blocks.
  ThreadPool one(1), two(2);
  for (Isa isa : isas()) {
    for (int64_t batch = 5; batch <= 24; ++batch) {
      check_matmul(GgmlType::Q4_0, 37, 544, batch, batch % 2 ? one : two, isa);
      check_matmul(GgmlType::Q4_K, 37, 512, batch, batch % 2 ? two : one, isa);
      check_matmul(GgmlType::Q6_K, 37, 512, batch, batch % 2 ? one : two, isa);
    }
    check_matmul(GgmlType::Q4_1, 37, 288, 13, two, isa);
    check_matmul(GgmlType::Q5_K, 37, 768, 13, two, isa);
  }
}

TEST(Matmul, QuantAmxBlocksAndTheirFallback) {
  // From batch 16 on, CPUs with AMX take tiles of up to 16 batch rows
  // (matmul_quant_lanes.cpp, kernels/amx.h): Q6_K over folded superblocks,
  // Q4_K and Q4_0 with per-group tdpbsud sums. 1280 columns are 5
  // superblocks: a panel of 4 and one of 1 (odd counts in the pipelines);
  // batches of one block, a block and a tail, two blocks, two and a tail. Each
  // is checked with AMX and without (the vpdpbusd tiles at the same
  // batches), and the 32-element types' AMX sums must equal the vpdpbusd
  // tiles' bit for bit (the same integers, the same f32 operations).
  ThreadPool two(2);
  const auto run = [&two](GgmlType type, int64_t rows, int64_t cols, int64_t batch) {
    auto w = make_weights(type, rows, cols, uint32_t(rows * 7 + batch));
    std::mt19937 rng(static_cast<uint32_t>(batch));
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> x(size_t(batch * cols));
    for (auto& v : x) v = dist(rng);
    std::vector<float> y(size_t(batch * rows), -12345.0f);
    matmul(WeightMatrix{w.bytes.data(), type, rows, cols}, x.data(), batch, y.data(), two, scratch());
    return y;
  };
  for (int64_t batch : {16, 21, 32, 37}) {
    for (bool amx : {true, false}) {
      set_amx_enabled(amx);
      check_matmul(GgmlType::Q6_K, 37, 1280, batch, two);
      check_matmul(GgmlType::Q4_K, 37, 1280, batch, two);
      check_matmul(GgmlType::Q4_0, 37, 1280, batch, two);
    }
    for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q4_0}) {
      set_amx_enabled(true);
      const std::vector<float> with_amx = run(type, 37, 1280, batch);
      set_amx_enabled(false);
      EXPECT_EQ(with_amx, run(type, 37, 1280, batch)) << gguf::ggml_type_traits(type).name << " batch " << batch;
    }
  }
  set_amx_enabled(true);
}

TEST(Matmul, OuterPathBatchPassesKBlocksAndRaggedEdges) {
  // Prefill batches (>= 32) of the types without an integer path, rows of
  // more than 1024 elements, take the outer-product micro-tiles
  // (matmul_outer.cpp): batch rows in groups of at most 14 (AVX-512) or 6
  // (AVX2), in passes of <= 256 rows (263 needs two); 256-wide K-blocks
  // (1112 = 4 full + a ragged 88; 1113 and 1033 end in a tail shorter than a
  // vector); 70 and 45 rows end in a partial 32- or 16-row panel; 300 rows
  // split into several tasks. Batch 31 and 1024 columns stay on the others.
  ThreadPool one(1), two(2);
  for (Isa isa : isas()) {
    for (int64_t batch : {31, 32, 41, 263}) {
      check_matmul(GgmlType::F16, 70, 1113, batch, batch % 2 ? one : two, isa);
      check_matmul(GgmlType::F32, 45, 1033, batch, two, isa);
      check_matmul(GgmlType::BF16, 300, 1112, batch, two, isa);
      check_matmul(GgmlType::Q8_0, 33, 1056, batch, one, isa);
    }
    check_matmul(GgmlType::F16, 40, 1024, 40, two, isa);
  }
}

TEST(Matmul, OuterPathBatchInLanesTailsAndPadding) {
  // The outer path's batch-in-lanes variant (matmul_outer_lanes.cpp, AVX-512
  // only) takes batches whose rows past the last whole vector are few
  // (dot-product tails of 1-6 rows: 33, 34, 36, 38, 82) or fill most of a
  // padded vector (44, 47, 63); the rest (39, 40, 41, 72), and every batch
  // on AVX2, run the weights-in-lanes variant. Columns end in a partial 128- or 256-wide
  // K-block and (F32) a tail shorter than a vector; 70 and 45 rows end in a
  // partial 8-row panel; 300 rows split into several tasks.
  ThreadPool one(1), two(2);
  for (Isa isa : isas()) {
    for (int64_t batch : {32, 33, 34, 36, 38, 39, 40, 41, 44, 47, 63, 64, 72, 82}) {
      check_matmul(GgmlType::F16, 70, 1113 - 1113 % 8 + (batch % 3) * 8, batch, batch % 2 ? one : two, isa);
      check_matmul(GgmlType::F32, 45, 1033, batch, two, isa);
    }
    for (int64_t batch : {34, 47, 82}) {
      check_matmul(GgmlType::BF16, 300, 1112, batch, two, isa);
      check_matmul(GgmlType::Q8_0, 33, 1056, batch, one, isa);
    }
  }
}

TEST(Matmul, LargeKCrossesSeveralKBlocks) {
  ThreadPool two(2);
  check_matmul(GgmlType::F16, 50, 2048 + 8, 6, two);
  check_matmul(GgmlType::F16, 30, 1024 + 40, 40, two);  // ragged tail past a multiple of every vector width
  check_matmul(GgmlType::Q8_0, 50, 1600, 4, two);
  check_matmul(GgmlType::Q6_K, 20, 1536, 8, two);
}

TEST(Matmul, RejectsBadShapesAndTypes) {
  ThreadPool one(1);
  std::vector<uint8_t> bytes(1024);
  std::vector<float> x(64), y(64);
  EXPECT_THROW(matmul(WeightMatrix{bytes.data(), GgmlType::Q8_0, 2, 48}, x.data(), 1, y.data(), one, scratch()), Error);
  EXPECT_THROW(matmul(WeightMatrix{bytes.data(), GgmlType::Q2_K, 1, 256}, x.data(), 1, y.data(), one, scratch()), Error);
  EXPECT_THROW(matmul(WeightMatrix{bytes.data(), GgmlType::F16, 2, 0}, x.data(), 1, y.data(), one, scratch()), Error);
}

TEST(Matmul, SharedInputTargetsMatchSeparateCallsAndReference) {
  // Mixed types (direct and packed paths) and row counts that split into
  // tasks unevenly; one pool pass must give each target exactly what its
  // own matmul() gives.
  const int64_t cols = 512;
  const struct {
    GgmlType type;
    int64_t rows;
  } shapes[] = {{GgmlType::F16, 200}, {GgmlType::Q8_0, 72}, {GgmlType::Q4_K, 30}, {GgmlType::F32, 1}};
  std::vector<EncodedWeights> weights;
  for (const auto& s : shapes) weights.push_back(make_weights(s.type, s.rows, cols, uint32_t(s.rows)));
  ThreadPool two(2);
  for (Isa isa : isas()) {
    for (int64_t batch : {1, 8, 13}) {
      SCOPED_TRACE(testing::Message() << "batch=" << batch << " isa=" << isa_name(isa));
      std::vector<float> x(size_t(batch * cols));
      for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::cos(double(i) * 0.37));
      std::vector<std::vector<float>> shared, separate;
      std::vector<MatmulTarget> targets;
      for (size_t i = 0; i < weights.size(); ++i) {
        shared.emplace_back(size_t(batch * shapes[i].rows), -1.0f);
        separate.emplace_back(size_t(batch * shapes[i].rows), -2.0f);
      }
      for (size_t i = 0; i < weights.size(); ++i)
        targets.push_back(
            {{weights[i].bytes.data(), shapes[i].type, shapes[i].rows, cols}, shared[i].data()});
      matmul_shared_input(targets, x.data(), batch, two, scratch(), isa);
      for (size_t i = 0; i < weights.size(); ++i) {
        matmul(targets[i].w, x.data(), batch, separate[i].data(), two, scratch(), isa);
        EXPECT_EQ(shared[i], separate[i]) << gguf::ggml_type_traits(shapes[i].type).name;
        expect_matches_reference(weights[i], x, shared[i], shapes[i].rows, cols, batch,
                                 matmul_quantizes_activations(shapes[i].type, isa));
      }
    }
  }
}

TEST(Matmul, SharedInputRejectsUnequalColsAndTooManyTargets) {
  ThreadPool one(1);
  std::vector<uint16_t> bytes(4096);
  std::vector<float> x(512), y(512);
  const WeightMatrix w64{bytes.data(), GgmlType::F16, 2, 64}, w32{bytes.data(), GgmlType::F16, 2, 32};
  const MatmulTarget unequal[] = {{w64, y.data()}, {w32, y.data()}};
  try {
    matmul_shared_input(unequal, x.data(), 1, one, scratch());
    FAIL() << "unequal cols accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("64 and 32"), std::string::npos) << e.what();
  }
  const MatmulTarget five[] = {
      {w64, y.data()}, {w64, y.data()}, {w64, y.data()}, {w64, y.data()}, {w64, y.data()}};
  EXPECT_THROW(matmul_shared_input(five, x.data(), 1, one, scratch()), Error);
}

// The caller's MatmulScratch holds every buffer (no hidden per-thread ones):
// once a call of a size has run, the same call allocates nothing, on every
// path (direct F16, packed BF16, integer Q4_K; batch 8 packs x on AVX-512).
// One thread, so the first call has grown every buffer a later one uses.
TEST(Matmul, SteadyStateCallsDoNotAllocate) {
  ThreadPool one(1);
  for (Isa isa : isas()) {
    for (GgmlType type : {GgmlType::F16, GgmlType::BF16, GgmlType::Q4_K}) {
      for (int64_t batch : {1, 8, 40}) {
        SCOPED_TRACE(testing::Message() << gguf::ggml_type_traits(type).name << " batch=" << batch
                                        << " isa=" << isa_name(isa));
        // 1280 columns: batch 40 of F16/BF16 takes the outer path (rows > 1024).
        const EncodedWeights w = make_weights(type, 48, 1280, 3);
        std::vector<float> x(size_t(batch * 1280), 0.25f), y(size_t(batch * 48));
        const WeightMatrix wm{w.bytes.data(), type, 48, 1280};
        MatmulScratch own;
        matmul(wm, x.data(), batch, y.data(), one, own, isa);  // grows the scratch
        const long before = g_allocations.load(), aligned_before = aligned_allocation_count();
        for (int i = 0; i < 3; ++i) matmul(wm, x.data(), batch, y.data(), one, own, isa);
        EXPECT_EQ(g_allocations.load() - before, 0) << "operator new";
        EXPECT_EQ(aligned_allocation_count() - aligned_before, 0) << "aligned scratch";
        ASSERT_NE(own.state, nullptr);
      }
    }
  }
}

}  // namespace
}  // namespace bifurcate::kernels
