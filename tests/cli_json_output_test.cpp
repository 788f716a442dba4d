// The commands' JSON output (cli/json_output.h): keys in the order written,
// bytes that are not UTF-8 replaced instead of thrown on, token pieces as
// text or byte values.
#include "cli/json_output.h"

#include <gtest/gtest.h>

#include <sstream>

namespace bifurcate::cli {
namespace {

TEST(JsonOutput, KeepsKeyOrderAndEndsWithNewline) {
  std::ostringstream out;
  print_json(out, {{"zeta", 1}, {"alpha", "x"}}, /*pretty=*/false);
  EXPECT_EQ(out.str(), "{\"zeta\":1,\"alpha\":\"x\"}\n");
}

TEST(JsonOutput, InvalidUtf8BecomesReplacementCharacter) {
  std::ostringstream out;
  print_json(out, {{"text", std::string("a\xe2\x82") + "b"}}, /*pretty=*/false);
  EXPECT_EQ(out.str(), "{\"text\":\"a\xef\xbf\xbd" "b\"}\n");
  EXPECT_EQ(Json::parse(out.str())["text"], "a\xef\xbf\xbd" "b");
}

TEST(JsonOutput, TokenPieceIsTextOrBytes) {
  EXPECT_EQ(token_piece_json(" Once"), Json(" Once"));
  EXPECT_EQ(token_piece_json("\xe2\x82"), Json::array({0xe2, 0x82}));
  EXPECT_EQ(token_piece_json(""), Json(""));
}

}  // namespace
}  // namespace bifurcate::cli
