// Request bodies the server fuzz target (fuzz/fuzz_server_request.cpp) found
// failing, fed again to the request parsing they broke, without HTTP: a real
// Engine on stories260K. Each failing input lives in
// tests/fuzz_regressions/server_request/ (fuzz input layout: byte 0 picks
// the route, bit 0 set for chat; the rest is the body); the fuzz flavour also
// replays that folder as seeds.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "server/api_error.h"
#include "server/request_parse.h"

namespace bifurcate::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kModel = std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/stories260K.gguf";
const fs::path kRegressions = fs::path(BIFURCATE_TESTS_DIR) / "fuzz_regressions" / "server_request";

class ServerFuzzRegression : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (fs::exists(kModel)) engine_ = std::make_unique<Engine>(EngineOptions{.model_path = kModel, .threads = 1});
  }
  static void TearDownTestSuite() { engine_.reset(); }
  void SetUp() override {
    if (!engine_) GTEST_SKIP() << "test data missing: " << kModel;
  }

  // The body through the handler's steps; the ApiError it raises, or status 0
  // when it parses. Any other exception fails the test (the client got a 500).
  ApiError outcome(const std::string& body, bool chat) {
    try {
      const json parsed = parse_body(body);
      if (chat) {
        parse_chat_request(parsed, *engine_, limits_, "m", [](const json& messages, const json&) { return messages.dump(); });
      } else {
        parse_completion_request(parsed, *engine_, limits_, "m");
      }
    } catch (const ApiError& e) {
      return e;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not an ApiError: " << e.what() << "\nbody: " << body.substr(0, 300);
    }
    return ApiError(0, "");
  }

  static std::unique_ptr<Engine> engine_;
  ServerOptions limits_;
};
std::unique_ptr<Engine> ServerFuzzRegression::engine_;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

std::string nested_arrays(int depth) { return std::string(size_t(depth), '[') + "1" + std::string(size_t(depth), ']'); }

// Every saved input ends in a 400 the client can read, none in a 500.
TEST_F(ServerFuzzRegression, EverySavedInputIsA400) {
  int replayed = 0;
  for (const auto& entry : fs::directory_iterator(kRegressions)) {
    const std::string input = read_bytes(entry.path());
    ASSERT_FALSE(input.empty()) << entry.path();
    const ApiError e = outcome(input.substr(1), (input[0] & 1) != 0);
    EXPECT_EQ(e.status(), 400) << entry.path();
    ++replayed;
  }
  EXPECT_GE(replayed, 2);
}

// A content part whose "type" is not a string: json::value("type", "") threw
// type_error (a 500). Now the part is refused like any non-text part.
TEST_F(ServerFuzzRegression, ContentPartTypeThatIsNotAStringIsInvalidMessages) {
  for (const char* type : {"1", "null", "[\"text\"]", "{\"t\":1}"}) {
    const std::string body =
        std::string(R"({"messages":[{"role":"user","content":[{"type":)") + type + R"(,"text":"x"}]}]})";
    const ApiError e = outcome(body, true);
    EXPECT_EQ(e.status(), 400) << body;
    EXPECT_EQ(e.param(), "messages") << body;
    EXPECT_NE(std::string(e.what()).find("only parts of type 'text'"), std::string::npos) << e.what();
  }
  // A text part still reaches the template.
  EXPECT_EQ(outcome(R"({"messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}]})", true).status(), 0);
}

// A number beyond a double (4001e308): nlohmann throws out_of_range, not
// parse_error, and parse_body let it through (a 500). Now invalid_json.
TEST_F(ServerFuzzRegression, NumberBeyondADoubleIsInvalidJson) {
  for (const char* body : {R"({"prompt":[0,4001e308,261]})", R"({"prompt":"x","temperature":-1e400})"}) {
    const ApiError e = outcome(body, false);
    EXPECT_EQ(e.status(), 400) << body;
    EXPECT_EQ(e.code(), "invalid_json") << body;
  }
  // The largest double still parses, and is then out of temperature's range.
  EXPECT_EQ(outcome(R"({"prompt":"x","temperature":1.7976931348623157e308})", false).param(), "temperature");
}

// 200000 nested arrays (400 KB, well under the 4 MiB body limit) in a chat
// message: copying the message recursed once per level and overflowed the
// stack (ASan: stack-overflow; a release server dies with SIGSEGV). Bodies
// nesting more than 128 levels are refused while parsing, which does not recurse.
TEST_F(ServerFuzzRegression, DeepNestingIsRefusedBeforeAnythingRecurses) {
  const std::string deep =
      R"({"messages":[{"role":"user","content":"x","extra":)" + nested_arrays(200000) + "}]}";
  ApiError e = outcome(deep, true);
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.code(), "invalid_json");
  EXPECT_NE(std::string(e.what()).find("deeper than 128 levels"), std::string::npos) << e.what();
  EXPECT_EQ(outcome(R"({"prompt":"x","extra":)" + nested_arrays(200000) + "}", false).code(), "invalid_json");

  // The limit's edge: the body object is level 1, so 127 arrays inside it
  // are level 128 (accepted) and 128 arrays level 129 (refused).
  EXPECT_EQ(outcome(R"({"prompt":"x","extra":)" + nested_arrays(127) + "}", false).status(), 0);
  EXPECT_EQ(outcome(R"({"prompt":"x","extra":)" + nested_arrays(128) + "}", false).code(), "invalid_json");
}

}  // namespace
}  // namespace bifurcate::server
