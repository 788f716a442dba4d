// Continuous batching (engine/scheduler.h): a request's tokens and log-probs
// do not depend on what runs beside it — alone or among 1..64 concurrent
// requests with overlapping and disjoint prefixes, cold or warm prefix cache,
// any prefill chunking and step budget, bifurcated or replicated — and the
// scheduler's threading, cancellation, failures, queue bound and admission.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>

#include "scheduler_test_support.h"
#include "util/error.h"

namespace bifurcate {
namespace {

using namespace scheduler_test;

class SchedulerExactness : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kVocab)) GTEST_SKIP() << "test data missing: " << kVocab;
  }
};

// The reference: every request alone, in an engine without a prefix cache.
std::vector<GenerationResult> alone(const std::vector<GenerationRequest>& requests, AttentionMode mode) {
  Engine engine(tiny_options(mode, false));
  std::vector<GenerationResult> out;
  for (const auto& r : requests) out.push_back(engine.generate(r));
  return out;
}

TEST_F(SchedulerExactness, ConcurrentEqualsAloneColdAndWarmAnyStepBudget) {
  const std::vector<GenerationRequest> requests = mixed_requests(24 / kScale, 7, 32000);
  const std::vector<GenerationResult> reference = alone(requests, AttentionMode::bifurcated);
  struct Setup {
    const char* name;
    AttentionMode mode;
    bool cache;
    int step_tokens, chunk;
  };
  for (const Setup& s : {Setup{"tree, default budget", AttentionMode::bifurcated, true, 256, 256},
                         Setup{"tree, 7-token steps, 5-token chunks", AttentionMode::bifurcated, true, 7, 5},
                         Setup{"bifurcated without cache, 40-token steps", AttentionMode::bifurcated, false, 40, 16},
                         Setup{"replicated", AttentionMode::replicated, false, 256, 33}}) {
    Engine engine(tiny_options(s.mode, s.cache, s.step_tokens, s.chunk));
    for (const char* pass : {"cold", "warm"}) {
      const std::vector<GenerationResult> got = run_concurrently(engine, requests);
      int cached = 0;
      for (size_t i = 0; i < requests.size(); ++i) {
        expect_same_samples(got[i], reference[i], std::string(s.name) + ", " + pass + ", request " + std::to_string(i));
        cached += got[i].stats.cached_prompt_tokens;
      }
      // The warm pass finds every group's system prompt (block-aligned) in the cache.
      if (s.cache && std::string(pass) == "warm") {
        EXPECT_GT(cached, 0) << s.name;
      }
      if (!s.cache) {
        EXPECT_EQ(cached, 0) << s.name;
      }
    }
    // Idle: every block left in use belongs to an evictable cached prefix.
    const EngineStatus status = engine.status();
    EXPECT_EQ(status.running_requests, 0);
    EXPECT_EQ(status.queued_requests, 0);
    EXPECT_EQ(status.kv_bytes_used, status.kv_bytes_cached) << s.name;
    if (!s.cache) {
      EXPECT_EQ(status.kv_bytes_used, 0u) << s.name;
    }
  }
}

// 1, 2, 5, 17 and 64 requests at once, against each alone.
TEST_F(SchedulerExactness, AnyNumberOfConcurrentRequests) {
  const std::vector<GenerationRequest> all = mixed_requests(64 / kScale, 21, 32000);
  const std::vector<GenerationResult> reference = alone(all, AttentionMode::bifurcated);
  Engine engine(tiny_options(AttentionMode::bifurcated, true, 64, 32));
  for (size_t count : {size_t(1), size_t(2), size_t(5), size_t(17), all.size()}) {
    const std::vector<GenerationRequest> some(all.begin(), all.begin() + long(count));
    const std::vector<GenerationResult> got = run_concurrently(engine, some);
    for (size_t i = 0; i < count; ++i)
      expect_same_samples(got[i], reference[i], std::to_string(count) + " at once, request " + std::to_string(i));
  }
}

// A prompt whose prefix is cached is prefilled below it: the cached tokens
// are counted, block-aligned, and the result equals the cold one.
TEST_F(SchedulerExactness, CachedPrefixIsBlockAlignedAndExact) {
  GenerationRequest r;
  r.prompt_tokens.resize(100);
  for (int i = 0; i < 100; ++i) r.prompt_tokens[size_t(i)] = 10 + i;
  r.max_tokens = 6;
  r.n = 2;
  r.ignore_eos = true;
  r.sampling.temperature = 0;
  Engine engine(tiny_options(AttentionMode::bifurcated, true));
  const GenerationResult cold = engine.generate(r);
  EXPECT_EQ(cold.stats.cached_prompt_tokens, 0);
  const GenerationResult warm = engine.generate(r);
  EXPECT_EQ(warm.stats.cached_prompt_tokens, 96);  // 99 matchable tokens, cut to 3 blocks
  expect_same_samples(warm, cold, "identical prompt");
  GenerationRequest longer = r;
  longer.prompt_tokens.resize(75);  // a prefix of the cached prompt: matches 64 of its 74
  const GenerationResult shorter = engine.generate(longer);
  EXPECT_EQ(shorter.stats.cached_prompt_tokens, 64);
  Engine fresh(tiny_options(AttentionMode::bifurcated, false));
  expect_same_samples(shorter, fresh.generate(longer), "prefix of a cached prompt");
}

std::string read_stories_reference() {
  std::ifstream in(std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/greedy-reference.json");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string json = buffer.str();
  const std::string key = "\"Once upon a time\": \"";
  size_t i = json.find(key);
  if (i == std::string::npos) return "";
  std::string text;
  for (i += key.size(); i < json.size() && json[i] != '"'; ++i) {
    if (json[i] == '\\') ++i, text += json[i] == 'n' ? '\n' : json[i];
    else text += json[i];
  }
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

// The real model: the llama2.c greedy continuation comes out unchanged while
// 15 other requests (sharing its prompt or not, sampled) run beside it.
TEST_F(SchedulerExactness, Stories260kGreedyReferenceAmongOthers) {
  if (!std::filesystem::exists(kStories)) GTEST_SKIP() << "test data missing: " << kStories;
  const std::string reference = read_stories_reference();
  ASSERT_GT(reference.size(), 200u);
  for (AttentionMode mode : {AttentionMode::bifurcated, AttentionMode::replicated}) {
    EngineOptions o;
    o.model_path = kStories;
    o.threads = 2;
    o.attention = mode;
    o.kv_precision = KvPrecision::f32;
    o.kv_budget_bytes = std::size_t(64) << 20;
    o.step_tokens = 24;
    o.prefill_chunk = 3;
    Engine engine(o);
    std::vector<GenerationRequest> requests;
    for (int i = 0; i < 16; ++i) {
      GenerationRequest r;
      r.prompt = i % 3 == 0 ? "Once upon a time" : (i % 3 == 1 ? "Once upon a time, there was" : "The dog");
      r.n = 1 + i % 2;
      r.max_tokens = i == 0 ? 160 : 20 + i * 5;
      r.ignore_eos = true;
      r.ranking = Ranking::none;
      r.sampling.temperature = i == 0 ? 0.0f : 0.9f;
      r.sampling.seed = uint64_t(i);
      requests.push_back(r);
    }
    const std::vector<GenerationResult> got = run_concurrently(engine, requests);
    EXPECT_EQ(("Once upon a time" + got[0].samples.at(0).text).substr(0, reference.size()), reference);
    // And each sampled request equals itself run alone.
    for (size_t i : {1u, 5u, 10u}) expect_same_samples(got[i], engine.generate(requests[i]), "stories request " + std::to_string(i));
  }
}

class SchedulerBehaviour : public SchedulerExactness {};

GenerationRequest long_request(int max_tokens, uint64_t seed = 1) {
  GenerationRequest r;
  r.prompt_tokens = {1, 500, 600, 700, 800};
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  r.sampling.seed = seed;
  return r;
}

TEST_F(SchedulerBehaviour, CancelFinishesOnlyThatRequestAndFreesItsBlocks) {
  Engine engine(tiny_options(AttentionMode::bifurcated, false));
  GenerationRequest other = long_request(30, 2);
  const GenerationResult other_alone = engine.generate(other);
  std::atomic<bool> cancel{false};
  GenerationCallbacks cb;
  cb.cancel = &cancel;
  int tokens_seen = 0;
  cb.on_token = [&](int, const TokenEvent&) {
    if (++tokens_seen == 3) cancel = true;
  };
  std::vector<FinishReason> finished;
  cb.on_finish = [&](int, FinishReason reason) { finished.push_back(reason); };
  GenerationRequest cancelled = long_request(200, 3);
  cancelled.n = 2;
  GenerationResult c, o;
  std::thread a([&] { c = engine.generate(cancelled, cb); });
  std::thread b([&] { o = engine.generate(other); });
  a.join(), b.join();
  ASSERT_EQ(c.samples.size(), 2u);
  for (const Sample& s : c.samples) {
    EXPECT_EQ(s.finish_reason, FinishReason::cancelled);
    EXPECT_LE(s.tokens.size(), 4u);  // freed at the next step after the flag
  }
  EXPECT_EQ(finished, std::vector<FinishReason>(2, FinishReason::cancelled));
  expect_same_samples(o, other_alone, "the request beside a cancelled one");
  EXPECT_EQ(engine.status().kv_bytes_used, 0u);
  // Cancelled before it was admitted: its samples come back empty.
  std::atomic<bool> early{true};
  GenerationCallbacks pre;
  pre.cancel = &early;
  const GenerationResult none = engine.generate(long_request(5), pre);
  for (const Sample& s : none.samples) EXPECT_EQ(s.finish_reason, FinishReason::cancelled);
}

TEST_F(SchedulerBehaviour, ThrowingCallbackFailsOnlyItsRequest) {
  Engine engine(tiny_options(AttentionMode::bifurcated, true));
  const GenerationRequest good = long_request(20, 5);
  const GenerationResult good_alone = engine.generate(good);
  GenerationCallbacks bad;
  bad.on_token = [](int, const TokenEvent&) { throw Error("callback refused the token"); };
  std::string error;
  GenerationResult g;
  std::thread a([&] {
    try {
      engine.generate(long_request(20, 6), bad);
    } catch (const Error& e) {
      error = e.what();
    }
  });
  std::thread b([&] { g = engine.generate(good); });
  a.join(), b.join();
  EXPECT_EQ(error, "callback refused the token");
  expect_same_samples(g, good_alone, "beside a failing request");
  const EngineStatus s = engine.status();
  EXPECT_EQ(s.kv_bytes_used, s.kv_bytes_cached);
}

// Blocks the model thread inside a callback until released, so a test can
// fill the queue deterministically.
struct ModelThreadGate {
  std::mutex m;
  std::condition_variable cv;
  bool entered = false, open = false;
  void block() {
    std::unique_lock lock(m);
    entered = true;
    cv.notify_all();
    cv.wait(lock, [&] { return open; });
  }
  void wait_entered() {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return entered; });
  }
  void release() {
    std::lock_guard lock(m);
    open = true;
    cv.notify_all();
  }
  // Callbacks that hold the model thread at their request's first token
  // (later tokens, after release(), pass straight through).
  GenerationCallbacks blocking_callbacks() {
    GenerationCallbacks cb;
    cb.on_token = [this](int, const TokenEvent&) { block(); };
    return cb;
  }
};

// The order in which requests get their first token: callbacks(name)
// records `name` when its request's first token arrives.
struct FirstTokenOrder {
  std::mutex m;
  std::vector<std::string> names;
  GenerationCallbacks callbacks(const std::string& name) {
    auto seen = std::make_shared<std::atomic<bool>>(false);
    GenerationCallbacks cb;
    cb.on_token = [this, name, seen](int, const TokenEvent&) {
      if (seen->exchange(true)) return;
      std::lock_guard lock(m);
      names.push_back(name);
    };
    return cb;
  }
};

void wait_for_queued(const Engine& engine, int n) {
  while (engine.status().queued_requests != n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

TEST_F(SchedulerBehaviour, FullQueueRefusesWithOverloaded) {
  EngineOptions o = tiny_options(AttentionMode::bifurcated, true);
  o.max_queued_requests = 2;
  Engine engine(o);
  ModelThreadGate gate;
  const GenerationCallbacks blocking = gate.blocking_callbacks();
  std::thread first([&] { engine.generate(long_request(1), blocking); });
  gate.wait_entered();
  std::vector<std::thread> queued;
  for (int i = 0; i < 2; ++i) {
    queued.emplace_back([&] { engine.generate(long_request(2)); });
    wait_for_queued(engine, i + 1);
  }
  EXPECT_THROW(engine.generate(long_request(2)), Overloaded);
  gate.release();
  first.join();
  for (auto& t : queued) t.join();
  EXPECT_EQ(engine.status().queued_requests, 0);
}

// With room for one big request at a time, a second big one waits, and a
// small one submitted after it does not overtake it (FIFO), though it would fit.
TEST_F(SchedulerBehaviour, BigRequestAtTheHeadIsNotOvertaken) {
  // tiny: 2 layers x 2 KV heads x (K + V) x 32 tokens x 16 dims x 4 bytes.
  const std::size_t block = 2 * 2 * 2 * 32 * 16 * 4;
  EngineOptions o = tiny_options(AttentionMode::bifurcated, false);
  o.kv_budget_bytes = 11 * block;  // one big (6) and one small (2), not two big
  Engine engine(o);
  GenerationRequest big = long_request(150, 1);  // 1 + 5 blocks
  GenerationRequest small = long_request(10, 2);  // 1 + 1 blocks
  ModelThreadGate gate;
  const GenerationCallbacks blocking = gate.blocking_callbacks();
  FirstTokenOrder first_tokens;
  std::thread b1([&] { engine.generate(big, blocking); });
  gate.wait_entered();
  const GenerationCallbacks big2_cb = first_tokens.callbacks("big2"), small_cb = first_tokens.callbacks("small");
  GenerationResult r_big2, r_small;
  std::thread b2([&] { r_big2 = engine.generate(big, big2_cb); });
  wait_for_queued(engine, 1);
  std::thread s([&] { r_small = engine.generate(small, small_cb); });
  wait_for_queued(engine, 2);
  gate.release();
  b1.join(), b2.join(), s.join();
  ASSERT_EQ(first_tokens.names.size(), 2u);
  EXPECT_EQ(first_tokens.names[0], "big2");
  EXPECT_GT(r_small.stats.queue_seconds, 0.0);
  // A request that could never fit is refused at once with the bytes it needs.
  GenerationRequest huge = long_request(400);
  huge.n = 4;
  try {
    engine.generate(huge);
    ADD_FAILURE() << "no error";
  } catch (const Overloaded&) {
    ADD_FAILURE() << "refused as overloaded, not as too big";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bytes"), std::string::npos) << e.what();
  }
}

TEST_F(SchedulerBehaviour, ShortPromptIsPrefilledBeforeALongOneAdmittedWithIt) {
  // Fewest tokens left first (Smith's rule, no waiters here): a 5-token
  // prompt admitted in the same step as a 120-token one gets its first token
  // first (in admission order it would wait for the long prompt's four
  // 32-token chunks).
  Engine engine(tiny_options(AttentionMode::bifurcated, false, /*step_tokens=*/32, /*chunk=*/32));
  ModelThreadGate gate;
  const GenerationCallbacks blocking = gate.blocking_callbacks();
  FirstTokenOrder first_tokens;
  GenerationRequest long_prompt = long_request(4, 2), short_prompt = long_request(4, 3);
  long_prompt.prompt_tokens.clear();
  for (int i = 0; i < 120; ++i) long_prompt.prompt_tokens.push_back(1 + (i * 37) % 700);
  short_prompt.prompt_tokens = {1, 9, 99, 199, 299};
  const GenerationResult long_alone = engine.generate(long_prompt), short_alone = engine.generate(short_prompt);

  std::thread blocker([&] { engine.generate(long_request(3, 1), blocking); });
  gate.wait_entered();
  const GenerationCallbacks long_cb = first_tokens.callbacks("long"), short_cb = first_tokens.callbacks("short");
  GenerationResult r_long, r_short;
  std::thread l([&] { r_long = engine.generate(long_prompt, long_cb); });
  wait_for_queued(engine, 1);
  std::thread s([&] { r_short = engine.generate(short_prompt, short_cb); });
  wait_for_queued(engine, 2);
  gate.release();
  blocker.join(), l.join(), s.join();
  ASSERT_EQ(first_tokens.names.size(), 2u);
  EXPECT_EQ(first_tokens.names[0], "short");
  // The order changes nothing in what each request generates.
  EXPECT_EQ(r_long.samples[0].tokens, long_alone.samples[0].tokens);
  EXPECT_EQ(r_short.samples[0].tokens, short_alone.samples[0].tokens);
}

}  // namespace
}  // namespace bifurcate
