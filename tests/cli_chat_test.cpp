// The chat paths of the `bifurcate` program: `chat-template` prints what
// reference_render.py prints (from a template file, or from a GGUF that
// carries tokenizer.chat_template), and `generate --chat` renders the
// model's template (or ChatML with a warning), recognises control tokens and
// does not double BOS.
#include <gtest/gtest.h>

#include <filesystem>
#include <span>

#include "chat_test_support.h"
#include "cli_support.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "tokenizer/tokenizer.h"

namespace bifurcate::cli_test {
namespace {

namespace fs = std::filesystem;
using chat::testing::chat_templates_dir;
using chat::testing::jinja2_available;
using chat::testing::read_file;
using chat::testing::write_file;

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// A copy of `source` with tokenizer.chat_template set to `chat_template`.
void copy_with_template(const std::string& source, const std::string& dest, const std::string& chat_template) {
  const gguf::GgufFile in = gguf::GgufFile::open(source);
  gguf::GgufWriter out;
  out.set_alignment(in.alignment());
  for (const auto& [key, value] : in.metadata())
    if (key != "general.alignment") out.set(key, value);
  out.set("tokenizer.chat_template", gguf::Value::string(chat_template));
  for (const gguf::TensorInfo& t : in.tensors())
    out.add_tensor(t.name, t.dims, t.type, std::span<const uint8_t>(t.data, t.n_bytes));
  out.write(dest);
}

class CliChatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(program_path())) GTEST_SKIP() << "the bifurcate program is not built in " << BIFURCATE_BINARY_DIR;
    if (!fs::exists(chat_templates_dir())) GTEST_SKIP() << "missing test data " << chat_templates_dir();
  }
  std::string qwen_template() const { return chat_templates_dir() + "/Qwen-Qwen2.5-7B-Instruct.jinja"; }
  std::string conversations() const { return chat_templates_dir() + "/conversations.json"; }
  std::string temp(const std::string& name) const { return ::testing::TempDir() + name; }
};

TEST_F(CliChatTest, TemplateFileOutputEqualsReferenceRender) {
  if (!jinja2_available()) GTEST_SKIP() << "/usr/bin/python3 cannot import jinja2 (install python3-jinja2)";
  for (const char* name : {"Qwen-Qwen2.5-7B-Instruct.jinja", "meta-llama-Llama-3.1-8B-Instruct.jinja",
                           "mistralai-Mistral-Nemo-Instruct-2407.jinja"}) {
    const std::string path = chat_templates_dir() + "/" + name;
    auto ref = chat::testing::run_command("/usr/bin/python3 " + quote(chat_templates_dir() + "/reference_render.py") +
                                          " " + quote(path) + " " + quote(conversations()));
    ASSERT_EQ(ref.status, 0);
    RunResult ours = run_bifurcate("chat-template --template " + quote(path) + " --conversations " +
                                   quote(conversations()) + " --json");
    ASSERT_EQ(ours.exit_code, 0) << ours.err;
    EXPECT_EQ(ours.out, ref.out) << name;
  }
}

TEST_F(CliChatTest, ModelFileTemplateAndSpecialTokens) {
  const std::string vocab = std::string(BIFURCATE_TESTDATA_DIR) + "/vocab/ggml-vocab-qwen2.gguf";
  if (!fs::exists(vocab)) GTEST_SKIP() << "missing test data " << vocab;
  const std::string model = temp("qwen2-vocab-with-template.gguf");
  copy_with_template(vocab, model, read_file(qwen_template()));
  const gguf::GgufFile file = gguf::GgufFile::open(model);
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(file);
  const std::string bos = tok.bos() < 0 ? "" : std::string(tok.token_text(tok.bos()));
  const std::string eos = tok.eos() < 0 ? "" : std::string(tok.token_text(tok.eos()));

  RunResult from_model = run_bifurcate("chat-template -m " + quote(model) + " -c " + quote(conversations()) + " --json");
  ASSERT_EQ(from_model.exit_code, 0) << from_model.err;
  if (jinja2_available()) {
    auto ref = chat::testing::run_command("/usr/bin/python3 " + quote(chat_templates_dir() + "/reference_render.py") +
                                          " " + quote(qwen_template()) + " " + quote(conversations()) + " --bos " +
                                          quote(bos) + " --eos " + quote(eos));
    EXPECT_EQ(from_model.out, ref.out);
  }
  // The rendered prompt's <|im_start|> becomes the one control token.
  const auto rendered = nlohmann::json::parse(from_model.out);
  const std::string prompt = rendered[0]["text"];
  ASSERT_EQ(prompt.rfind("<|im_start|>system\n", 0), 0u) << prompt;
  const std::vector<int32_t> special = tok.encode(prompt, false, true);
  const std::vector<int32_t> plain = tok.encode(prompt, false, false);
  ASSERT_FALSE(special.empty());
  EXPECT_EQ(tok.token_text(special[0]), "<|im_start|>");
  EXPECT_LT(special.size(), plain.size());

  // A vocabulary without a template: refused by chat-template, named.
  RunResult none = run_bifurcate("chat-template -m " + quote(vocab) + " -c " + quote(conversations()) + " --json");
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_TRUE(contains(none.err, "has no tokenizer.chat_template")) << none.err;
}

TEST_F(CliChatTest, GenerateChatDoesNotDoubleBos) {
  const std::string stories = std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/stories260K.gguf";
  if (!fs::exists(stories)) GTEST_SKIP() << "missing test data " << stories;
  const std::string model = temp("stories260K-with-template.gguf");
  copy_with_template(stories, model,
                     "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
                     "{% if add_generation_prompt %}assistant:{% endif %}");
  RunResult r = run_bifurcate("generate --chat -m " + quote(model) +
                              " -p 'Once upon a time' --system 'Tell a story' --samples 1 -n 2 --temp 0 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json j = parse_json(r.out);
  const std::string prompt = j["prompt"].get<std::string>();
  EXPECT_EQ(prompt, "<s>system: Tell a story\nuser: Once upon a time\nassistant:");
  const gguf::GgufFile file = gguf::GgufFile::open(model);
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(file);
  ASSERT_TRUE(tok.add_bos_by_default());
  const auto once = tok.encode(prompt, false, true);
  const auto doubled = tok.encode(prompt, true, true);
  ASSERT_EQ(once[0], tok.bos());
  ASSERT_EQ(doubled.size(), once.size() + 1);
  EXPECT_EQ(j["stats"]["prompt_tokens"].get<double>(), double(once.size()));
  EXPECT_FALSE(contains(r.err, "warning")) << r.err;
}

TEST_F(CliChatTest, GenerateChatFallsBackToChatmlWithWarning) {
  const std::string stories = std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/stories260K.gguf";
  if (!fs::exists(stories)) GTEST_SKIP() << "missing test data " << stories;
  RunResult r = run_bifurcate("generate --chat -p 'Hi' --samples 1 -n 2 --temp 0 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "has no tokenizer.chat_template; using the ChatML format")) << r.err;
  EXPECT_EQ(parse_json(r.out)["prompt"].get<std::string>(), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");

  // --chat-template overrides, and a broken template is an error naming its position.
  const std::string custom = temp("custom.jinja");
  write_file(custom, "[{{ messages[0].content|upper }}]");
  RunResult o = run_bifurcate("generate --chat --chat-template " + quote(custom) + " -p 'hi' --samples 1 -n 1 --json");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(parse_json(o.out)["prompt"].get<std::string>(), "[HI]");
  write_file(custom, "ok\n{% for %}");
  RunResult bad = run_bifurcate("generate --chat --chat-template " + quote(custom) + " -p 'hi' --samples 1 -n 1");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_TRUE(contains(bad.err, "line 2, column 8")) << bad.err;
}

TEST_F(CliChatTest, UsageErrors) {
  EXPECT_EQ(run_bifurcate("chat-template -c " + quote(conversations())).exit_code, 2);
  EXPECT_EQ(run_bifurcate("chat-template -t " + quote(qwen_template())).exit_code, 2);
  EXPECT_EQ(run_bifurcate("generate --system x -p y").exit_code, 2);
  RunResult bad_json = run_bifurcate("chat-template -t " + quote(qwen_template()) + " -c " + quote(qwen_template()));
  EXPECT_EQ(bad_json.exit_code, 1);
  EXPECT_TRUE(contains(bad_json.err, "not valid JSON")) << bad_json.err;
}

}  // namespace
}  // namespace bifurcate::cli_test
