#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "util/error.h"

namespace bifurcate {
namespace {

TEST(ThreadPool, RunsEveryTaskExactlyOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (std::size_t n : {0u, 1u, 2u, 7u, 1000u}) {
      std::vector<std::atomic<int>> hits(n);
      pool.run(n, [&](std::size_t i, int thread) {
        EXPECT_GE(thread, 0);
        EXPECT_LT(thread, threads);
        hits[i].fetch_add(1);
      });
      for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "task " << i;
    }
  }
}

TEST(ThreadPool, ParallelForCoversRangeWithoutOverlap) {
  // Every index exactly once (a sum of hits would not see one index skipped
  // and another visited twice), in ranges that are well formed.
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (std::size_t n : {1u, 2u, 5u, 64u, 1001u}) {
      for (std::size_t grain : {1u, 7u, 2000u}) {
        std::vector<std::atomic<int>> hits(n);
        pool.parallel_for(n, grain, [&](std::size_t b, std::size_t e, int thread) {
          EXPECT_LT(b, e);
          EXPECT_LE(e, n);
          EXPECT_GE(thread, 0);
          EXPECT_LT(thread, threads);
          for (std::size_t i = b; i < e && i < n; ++i) hits[i].fetch_add(1, std::memory_order_relaxed);
        });
        for (std::size_t i = 0; i < n; ++i) {
          EXPECT_EQ(hits[i].load(), 1)
              << "index " << i << " of " << n << ", grain " << grain << ", " << threads << " threads";
        }
      }
    }
  }
}

TEST(ThreadPool, RethrowsTaskErrorsAndStaysUsable) {
  ThreadPool pool(2);
  EXPECT_THROW(pool.run(10, [](std::size_t i, int) { require(i != 5, "task ", i, " failed"); }), Error);
  std::atomic<int> count{0};
  pool.run(10, [&](std::size_t, int) { count++; });
  EXPECT_EQ(count.load(), 10);
}

TEST(ThreadPool, RejectsZeroThreads) { EXPECT_THROW(ThreadPool(0), Error); }

}  // namespace
}  // namespace bifurcate
