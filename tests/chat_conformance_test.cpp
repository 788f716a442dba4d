// Conformance: every real chat template in ../shared/testdata/chat-templates,
// for every conversation of its conversations.json and of
// tests/chat_conversations.json, with add_generation_prompt true and false,
// renders exactly what reference_render.py (jinja2, as transformers runs it)
// renders — the same text, or an error where jinja2 raises one, with the same
// message.
#include <algorithm>
#include <filesystem>
#include <iostream>

#include "chat_test_support.h"

namespace bifurcate::chat::testing {
namespace {

std::vector<std::string> template_files() {
  std::vector<std::string> files;
  if (!std::filesystem::is_directory(chat_templates_dir())) return files;
  for (const auto& entry : std::filesystem::directory_iterator(chat_templates_dir()))
    if (entry.path().extension() == ".jinja") files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::string> conversation_files() {
  return {chat_templates_dir() + "/conversations.json", tests_dir() + "/chat_conversations.json"};
}

// Python reports runaway recursion as RecursionError; the renderer stops at
// RenderLimits::max_depth first. Both refuse the conversation: equivalent.
bool same_error(const std::string& reference, const std::string& ours) {
  if (reference == ours) return true;
  return reference.find("maximum recursion depth exceeded") != std::string::npos &&
         ours.find("RenderLimits::max_depth") != std::string::npos;
}

class Conformance : public ::testing::Test {
 protected:
  void SetUp() override {
    if (template_files().empty()) GTEST_SKIP() << "no chat templates in " << chat_templates_dir();
    if (!jinja2_available())
      GTEST_SKIP() << "/usr/bin/python3 cannot import jinja2: install Debian's python3-jinja2 "
                      "(scripts/install-deps.sh) to run the jinja2 conformance tests";
  }
};

TEST_F(Conformance, EveryTemplateAndConversationMatchesReferenceRender) {
  std::size_t total = 0;
  for (const std::string& path : template_files()) {
    const std::string name = std::filesystem::path(path).filename().string();
    const ChatTemplate tmpl(read_file(path));
    std::size_t matched = 0, compared = 0, errors = 0;
    for (const std::string& conversations_path : conversation_files()) {
      CommandResult ref = run_command("/usr/bin/python3 '" + chat_templates_dir() + "/reference_render.py' '" + path +
                                      "' '" + conversations_path + "'");
      ASSERT_EQ(ref.status, 0) << "reference_render.py failed on " << name;
      const auto expected = nlohmann::ordered_json::parse(ref.out);
      const auto conversations = nlohmann::ordered_json::parse(read_file(conversations_path));
      ASSERT_EQ(expected.size(), conversations.size() * 2);
      for (std::size_t i = 0; i < expected.size(); ++i) {
        const auto& conv = conversations[i / 2];
        const auto& want = expected[i];
        RenderOptions options = reference_options();
        options.add_generation_prompt = want["add_generation_prompt"].get<bool>();
        options.tools_ordered = conv.contains("tools") ? conv["tools"] : nlohmann::ordered_json();
        SCOPED_TRACE(name + " / " + conv["name"].get<std::string>() +
                     (options.add_generation_prompt ? " / generation prompt" : " / no generation prompt"));
        ++compared;
        try {
          std::string text = tmpl.render(conv["messages"], options);
          ASSERT_TRUE(want.contains("text")) << "jinja2 raised '" << want["error"].get<std::string>()
                                             << "' but we rendered:\n" << text;
          EXPECT_EQ(text, want["text"].get<std::string>());
          matched += text == want["text"].get<std::string>();
        } catch (const TemplateError& e) {
          ASSERT_TRUE(want.contains("error")) << "we raised '" << e.what() << "' but jinja2 rendered:\n"
                                              << want["text"].get<std::string>();
          EXPECT_TRUE(same_error(want["error"].get<std::string>(), e.message()))
              << "jinja2: " << want["error"].get<std::string>() << "\nours:   " << e.message();
          matched += same_error(want["error"].get<std::string>(), e.message());
          ++errors;
        }
      }
    }
    std::cout << "[ conformance ] " << name << ": " << matched << "/" << compared << " renders match ("
              << errors << " refused by the template itself)\n";
    total += compared;
  }
  EXPECT_GT(total, 0u);
}

}  // namespace
}  // namespace bifurcate::chat::testing
