// FlagParser: one declaration drives parsing, defaults, errors and --help.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/args.h"

namespace bifurcate::cli {
namespace {

struct DemoArgs {
  std::string input;
  std::string model = "m.gguf";
  int64_t offset = -3;
  uint64_t count = 8;
  double temperature = 0.5;
  bool verbose = false;
  std::string output;

  template <class Visitor>
  void for_each(Visitor& v) {
    v.positional(input, "INPUT", "the input file");
    v(model, "model", 'm', "model file");
    v(offset, "offset", '\0', "signed offset");
    v(count, "count", 'n', "how many");
    v(temperature, "temperature", 't', "sampling temperature");
    v(verbose, "verbose", 'v', "talk more");
    v(output, "output", 'o', "where to write", Need::kRequired);
  }
};

// Parses `words` (the command name is prepended) into `args`.
ParseResult parse(DemoArgs& args, std::vector<std::string> words) {
  words.insert(words.begin(), "demo");
  std::vector<const char*> argv;
  for (const auto& w : words) argv.push_back(w.c_str());
  FlagParser parser = make_flag_parser(args, "demo", "A demo command.");
  return parser.parse(int(argv.size()), argv.data());
}

// The UsageError message for `words`, or "" if parsing succeeded.
std::string usage_error(std::vector<std::string> words) {
  DemoArgs args;
  try {
    parse(args, std::move(words));
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

TEST(FlagParser, DefaultsStayWhenFlagsAreAbsent) {
  DemoArgs args;
  ASSERT_EQ(parse(args, {"in.txt", "-o", "out"}), ParseResult::kRun);
  EXPECT_EQ(args.input, "in.txt");
  EXPECT_EQ(args.model, "m.gguf");
  EXPECT_EQ(args.offset, -3);
  EXPECT_EQ(args.count, 8u);
  EXPECT_EQ(args.temperature, 0.5);
  EXPECT_FALSE(args.verbose);
  EXPECT_EQ(args.output, "out");
}

TEST(FlagParser, ParsesLongShortAndEqualsForms) {
  DemoArgs args;
  ASSERT_EQ(parse(args, {"--model", "x.gguf", "--offset=-17", "-n", "42", "--temperature=1e-3", "-v",
                         "--output=o.txt", "in"}),
            ParseResult::kRun);
  EXPECT_EQ(args.model, "x.gguf");
  EXPECT_EQ(args.offset, -17);
  EXPECT_EQ(args.count, 42u);
  EXPECT_DOUBLE_EQ(args.temperature, 1e-3);
  EXPECT_TRUE(args.verbose);
  EXPECT_EQ(args.output, "o.txt");
  EXPECT_EQ(args.input, "in");
}

TEST(FlagParser, NegativeNumberIsAValueNotAFlag) {
  DemoArgs args;
  ASSERT_EQ(parse(args, {"--offset", "-5", "-t", "-0.25", "-o", "x", "in"}), ParseResult::kRun);
  EXPECT_EQ(args.offset, -5);
  EXPECT_EQ(args.temperature, -0.25);
}

TEST(FlagParser, ExplicitBoolValuesAndDoubleDash) {
  DemoArgs args;
  args.verbose = true;
  ASSERT_EQ(parse(args, {"--verbose=false", "-o", "x", "--", "-file-starting-with-dash"}), ParseResult::kRun);
  EXPECT_FALSE(args.verbose);
  EXPECT_EQ(args.input, "-file-starting-with-dash");
  EXPECT_NE(usage_error({"--verbose=maybe", "-o", "x", "in"}).find("--verbose"), std::string::npos);
}

TEST(FlagParser, HelpWinsOverMissingRequiredFlags) {
  DemoArgs args;
  EXPECT_EQ(parse(args, {"--help"}), ParseResult::kShowHelp);
  EXPECT_EQ(parse(args, {"-n", "3", "-h"}), ParseResult::kShowHelp);
}

TEST(FlagParser, UnknownFlagIsNamed) {
  std::string message = usage_error({"in", "-o", "x", "--bogus", "1"});
  EXPECT_NE(message.find("unknown flag '--bogus'"), std::string::npos) << message;
  EXPECT_NE(message.find("bifurcate demo --help"), std::string::npos) << message;
  message = usage_error({"in", "-o", "x", "-q"});
  EXPECT_NE(message.find("'-q'"), std::string::npos) << message;
}

TEST(FlagParser, MissingValueIsNamed) {
  std::string message = usage_error({"in", "-o", "x", "--count"});
  EXPECT_NE(message.find("--count needs a value"), std::string::npos) << message;
}

TEST(FlagParser, BadNumbersAreNamedWithTheText) {
  struct Case {
    std::vector<std::string> words;
    std::string expected;
  };
  std::vector<Case> cases = {
      {{"in", "-o", "x", "--count", "abc"}, "--count: 'abc' is not a non-negative integer"},
      {{"in", "-o", "x", "-n", "-4"}, "-n: '-4' is not a non-negative integer"},
      {{"in", "-o", "x", "--count=12x"}, "'12x'"},
      {{"in", "-o", "x", "--count", "99999999999999999999999"}, "--count"},  // overflows uint64
      {{"in", "-o", "x", "--offset", "1.5"}, "--offset: '1.5' is not an integer"},
      {{"in", "-o", "x", "--temperature", "warm"}, "--temperature: 'warm' is not a number"},
      {{"in", "-o", "x", "--temperature="}, "--temperature: '' is not a number"},
  };
  for (const Case& c : cases) {
    std::string message = usage_error(c.words);
    EXPECT_NE(message.find(c.expected), std::string::npos) << "got: " << message << "\nwanted: " << c.expected;
  }
}

TEST(FlagParser, RequiredFlagsAndPositionals) {
  EXPECT_NE(usage_error({"in"}).find("missing required flag --output"), std::string::npos);
  EXPECT_NE(usage_error({"-o", "x"}).find("missing argument INPUT"), std::string::npos);
  EXPECT_NE(usage_error({"in", "extra", "-o", "x"}).find("unexpected argument 'extra'"), std::string::npos);
  EXPECT_NE(usage_error({"in", "-o", "x", "--output", "y"}).find("--output given more than once"),
            std::string::npos);
}

TEST(FlagParser, HelpComesFromTheDeclaration) {
  DemoArgs args;
  std::string help = make_flag_parser(args, "demo", "A demo command.").help();
  EXPECT_NE(help.find("usage: bifurcate demo INPUT --output TEXT [flags]"), std::string::npos) << help;
  EXPECT_NE(help.find("A demo command."), std::string::npos) << help;
  EXPECT_NE(help.find("the input file"), std::string::npos) << help;
  // Every flag appears with its alias, placeholder, help and default.
  EXPECT_NE(help.find("-m, --model TEXT"), std::string::npos) << help;
  EXPECT_NE(help.find("model file (default: \"m.gguf\")"), std::string::npos) << help;
  EXPECT_NE(help.find("    --offset INT"), std::string::npos) << help;
  EXPECT_NE(help.find("(default: -3)"), std::string::npos) << help;
  EXPECT_NE(help.find("-n, --count N"), std::string::npos) << help;
  EXPECT_NE(help.find("how many (default: 8)"), std::string::npos) << help;
  EXPECT_NE(help.find("(default: 0.5)"), std::string::npos) << help;
  EXPECT_NE(help.find("-v, --verbose "), std::string::npos) << help;
  EXPECT_NE(help.find("where to write (required)"), std::string::npos) << help;
  EXPECT_NE(help.find("-h, --help"), std::string::npos) << help;
}

struct ClashingArgs {
  uint64_t a = 0, b = 0;
  template <class Visitor>
  void for_each(Visitor& v) {
    v(a, "same", 'x', "first");
    v(b, "other", 'x', "second, same alias");
  }
};

TEST(FlagParser, DuplicateDeclarationIsAnError) {
  ClashingArgs args;
  EXPECT_THROW(make_flag_parser(args, "clash", ""), Error);
}

// A fixed positional, then a variadic list (as in `detokenize 1 2 3`).
struct ListArgs {
  std::string mode;
  std::vector<std::string> ids;
  bool flag = false;
  template <class Visitor>
  void for_each(Visitor& v) {
    v.positional(mode, "MODE", "the mode");
    v.positional_list(ids, "ID", "token ids");
    v(flag, "flag", 'f', "a flag");
  }
};

TEST(FlagParser, PositionalListTakesEveryTrailingArgument) {
  ListArgs args;
  FlagParser parser = make_flag_parser(args, "list", "A list command.");
  const char* argv[] = {"list", "m", "1", "--flag", "22", "--", "-3"};
  ASSERT_EQ(parser.parse(7, argv), ParseResult::kRun);
  EXPECT_EQ(args.mode, "m");
  EXPECT_EQ(args.ids, (std::vector<std::string>{"1", "22", "-3"}));
  EXPECT_TRUE(args.flag);
  EXPECT_NE(parser.help().find("usage: bifurcate list MODE ID... [flags]"), std::string::npos) << parser.help();
  EXPECT_NE(parser.help().find("ID..."), std::string::npos);

  ListArgs empty;
  FlagParser empty_parser = make_flag_parser(empty, "list", "");
  const char* only_mode[] = {"list", "m"};
  try {
    empty_parser.parse(2, only_mode);
    ADD_FAILURE() << "an empty list was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("missing argument ID"), std::string::npos) << e.what();
  }
}

struct TwoListArgs {
  std::vector<std::string> a, b;
  template <class Visitor>
  void for_each(Visitor& v) {
    v.positional_list(a, "A", "first");
    v.positional_list(b, "B", "second");
  }
};

TEST(FlagParser, TwoPositionalListsAreAnError) {
  TwoListArgs args;
  EXPECT_THROW(make_flag_parser(args, "two", ""), Error);
}

}  // namespace
}  // namespace bifurcate::cli
