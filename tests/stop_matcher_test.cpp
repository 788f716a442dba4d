#include "engine/stop_matcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "util/error.h"

namespace bifurcate::engine {
namespace {

TEST(StopMatcher, StopStringSplitOverTwoPushes) {
  StopMatcher m({"</s>"});
  EXPECT_EQ(m.push("Hello </"), "Hello ");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.push("s> and more"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.push("later text"), "");
  EXPECT_EQ(m.finish(), "");
}

TEST(StopMatcher, StopStringSplitOverThreePushes) {
  StopMatcher m({"bcd"});
  EXPECT_EQ(m.push("xab"), "xa");
  EXPECT_EQ(m.push("c"), "");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.push("de"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, TextBeforeStopInSamePushIsEmittedAndTextAfterDropped) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.push("one two"), "one two");
  EXPECT_EQ(m.push(" threeSTOPfour five"), " three");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.push("six"), "");
  EXPECT_EQ(m.finish(), "");
}

TEST(StopMatcher, HeldBackTextReleasedByFinish) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.push("the EN"), "the ");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.finish(), "EN");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, HeldBackTextReleasedOnceItCannotStartAStop) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.push("E"), "");
  EXPECT_EQ(m.push("N"), "");
  EXPECT_EQ(m.push("x"), "ENx");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, HoldsTheLongestPossibleStart) {
  // "aaa" ends with "aa", a start of "aab"; only the first "a" is safe.
  StopMatcher m({"aab"});
  EXPECT_EQ(m.push("a"), "");
  EXPECT_EQ(m.push("a"), "");
  EXPECT_EQ(m.push("a"), "a");
  EXPECT_EQ(m.push("b"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, ShorterStopThatIsPrefixOfLongerOneStopsFirst) {
  StopMatcher m({"abc", "ab"});
  EXPECT_EQ(m.push("za"), "z");
  EXPECT_EQ(m.push("bc"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, EarliestStartingStopWinsWhenSeveralComplete) {
  // "world" is a suffix of "hello world": both complete on the last push;
  // the cut is at the start of the earlier one.
  StopMatcher m({"world", "hello world"});
  EXPECT_EQ(m.push("say hello wor"), "say ");
  EXPECT_EQ(m.push("ld!"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, MultiByteUtf8StopSplitInsideACharacter) {
  StopMatcher m({"\xE3\x80\x82"});  // "。"
  EXPECT_EQ(m.push("\xE4\xBD\xA0\xE5\xA5\xBD\xE3"), "\xE4\xBD\xA0\xE5\xA5\xBD");  // "你好" + first byte
  EXPECT_EQ(m.push("\x80"), "");
  EXPECT_EQ(m.push("\x82" "after"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, MultiByteUtf8NearMissIsReleasedWhole) {
  StopMatcher m({"\xC3\xA9t\xC3\xA9"});  // "été"
  EXPECT_EQ(m.push("caf\xC3"), "caf");
  EXPECT_EQ(m.push("\xA8 \xF0\x9F\x99\x82"), "\xC3\xA8 \xF0\x9F\x99\x82");  // "è 🙂"
  EXPECT_EQ(m.push("\xC3\xA9t"), "");
  EXPECT_EQ(m.push("\xC3\xA9"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, NoStopStringsPassesEverythingThrough) {
  StopMatcher m({});
  EXPECT_EQ(m.push("abc"), "abc");
  EXPECT_EQ(m.push(""), "");
  EXPECT_EQ(m.finish(), "");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, EmptyStopStringIsRejected) {
  try {
    StopMatcher m({"ok", ""});
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("string 1 of 2 is empty"), std::string::npos) << e.what();
  }
}

struct ReferenceResult {
  std::string output;
  bool stopped;
};

// Reference: after each push, look for the stop strings in all text so far;
// at the first push where any occurs, the output is the text before the
// earliest occurrence. Without any, the output is all the text.
ReferenceResult reference_output(const std::vector<std::string>& stops, const std::vector<std::string>& pieces) {
  std::string text;
  for (const std::string& piece : pieces) {
    text += piece;
    std::size_t earliest = std::string::npos;
    for (const std::string& stop : stops) earliest = std::min(earliest, text.find(stop));
    if (earliest != std::string::npos) return {text.substr(0, earliest), true};
  }
  return {text, false};
}

TEST(StopMatcher, MatchesReferenceOnRandomSplits) {
  std::mt19937 rng(1234);
  auto random_string = [&](std::size_t min_len, std::size_t max_len) {
    std::string s(std::uniform_int_distribution<std::size_t>(min_len, max_len)(rng), 'a');
    for (char& c : s) c = static_cast<char>('a' + std::uniform_int_distribution<int>(0, 2)(rng));
    return s;
  };
  int stopped_cases = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::string> stops(std::uniform_int_distribution<int>(1, 3)(rng));
    for (std::string& s : stops) s = random_string(1, 5);
    std::vector<std::string> pieces(std::uniform_int_distribution<int>(1, 8)(rng));
    for (std::string& p : pieces) p = random_string(0, 4);

    const ReferenceResult reference = reference_output(stops, pieces);
    const std::string& expected = reference.output;
    StopMatcher m(stops);
    std::string emitted;
    for (const std::string& piece : pieces) {
      emitted += m.push(piece);
      // Whatever has been emitted is final: it must be a prefix of the answer.
      ASSERT_EQ(expected.compare(0, emitted.size(), emitted), 0) << "trial " << trial;
    }
    emitted += m.finish();
    ASSERT_EQ(emitted, expected) << "trial " << trial;
    ASSERT_EQ(m.stopped(), reference.stopped) << "trial " << trial;
    stopped_cases += m.stopped();
  }
  // Both outcomes must be well represented for the comparison to mean much.
  EXPECT_GT(stopped_cases, 500);
  EXPECT_LT(stopped_cases, 2500);
}

}  // namespace
}  // namespace bifurcate::engine
