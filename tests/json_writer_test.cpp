#include "util/json_writer.h"

#include <gtest/gtest.h>

#include <sstream>

namespace bifurcate {
namespace {

TEST(JsonWriter, EscapesStringsAndReplacesInvalidUtf8) {
  EXPECT_EQ(json_quote("a\"b\\c\n\t\x01"), "\"a\\\"b\\\\c\\n\\t\\u0001\"");
  EXPECT_EQ(json_quote("h\xc3\xa9llo"), "\"h\xc3\xa9llo\"");     // é kept
  EXPECT_EQ(json_quote("x\xff" "y"), "\"x\\ufffdy\"");          // stray byte
  EXPECT_EQ(json_quote("\xe2\x82"), "\"\\ufffd\\ufffd\"");      // truncated sequence
}

TEST(JsonWriter, WritesNestedContainersWithCommas) {
  std::ostringstream out;
  JsonWriter j(out, /*pretty=*/false);
  j.begin_object();
  j.key("n");
  j.value(3);
  j.key("xs");
  j.begin_array();
  j.value(1.5);
  j.value(true);
  j.null();
  j.begin_object();
  j.end_object();
  j.end_array();
  j.key("s");
  j.value("t");
  j.end_object();
  EXPECT_EQ(out.str(), "{\"n\":3,\"xs\":[1.5,true,null,{}],\"s\":\"t\"}");
}

TEST(JsonWriter, NonFiniteNumbersBecomeNull) {
  std::ostringstream out;
  JsonWriter j(out, false);
  j.begin_array();
  j.value(1.0 / 0.0);
  j.end_array();
  EXPECT_EQ(out.str(), "[null]");
}

}  // namespace
}  // namespace bifurcate
