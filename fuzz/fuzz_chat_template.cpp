// Fuzz target: the chat-template engine (chat/chat_template.h), parsing and
// rendering untrusted Jinja templates, as a model file's
// tokenizer.chat_template is.
//
// Input layout:
//   byte 0   bits 0-3: conversation (modulo the count in the test data's
//            chat-templates/conversations.json); bit 4: add_generation_prompt;
//            bit 5: pass the conversation's tools; bit 6: the messages come
//            from the input instead (below)
//   rest     the template source; with bit 6, the source ends at the first
//            NUL and what follows is parsed as the messages' JSON (any JSON
//            value; when it is not valid JSON the conversation is used)
//
// The header's contract is the oracle: ChatTemplate(source).render(...)
// throws nothing but TemplateError for any bytes. Any other exception, a
// crash, a sanitizer report, a leak or a timeout is a finding. The render
// limits are lowered from their defaults (real templates take a few thousand
// steps and a few KiB) so one input stays fast; what they bound is the same.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"

namespace {

using namespace bifurcate;
using nlohmann::ordered_json;

struct Conversation {
  ordered_json messages;
  ordered_json tools;  // null when the conversation has none
};

std::vector<Conversation>& conversations() {
  static std::vector<Conversation> loaded;
  return loaded;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  const std::string path = std::string(BIFURCATE_TESTDATA_DIR) + "/chat-templates/conversations.json";
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "fuzz_chat_template: cannot read %s; the test data is missing\n", path.c_str());
    std::exit(77);  // ctest's SKIP_RETURN_CODE for this target
  }
  for (const ordered_json& c : ordered_json::parse(in)) {
    conversations().push_back({c.at("messages"), c.contains("tools") ? c.at("tools") : ordered_json()});
  }
  if (conversations().empty()) std::abort();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const uint8_t control = data[0];
  const Conversation& conversation = conversations()[(control & 0x0F) % conversations().size()];
  std::string_view source(reinterpret_cast<const char*>(data + 1), size - 1);

  ordered_json own_messages;
  if ((control & 0x40) != 0) {
    const std::size_t nul = source.find('\0');
    if (nul != std::string_view::npos) {
      own_messages = ordered_json::parse(source.substr(nul + 1), nullptr, /*allow_exceptions=*/false);
      if (own_messages.is_discarded()) own_messages = nullptr;
      source = source.substr(0, nul);
    }
  }
  const bool use_own = (control & 0x40) != 0 && !own_messages.is_null();

  chat::RenderOptions options;
  options.add_generation_prompt = (control & 0x10) != 0;
  options.bos_token = "<s>";
  options.eos_token = "</s>";
  if ((control & 0x20) != 0) options.tools_ordered = conversation.tools;
  options.now = std::chrono::sys_seconds(std::chrono::seconds(1767312000));  // 2026-01-02, as the reference
  options.limits.max_steps = 200'000;
  options.limits.max_output_bytes = std::size_t(1) << 20;

  try {
    const chat::ChatTemplate tmpl{std::string(source)};
    (void)tmpl.render(use_own ? own_messages : conversation.messages, options);
  } catch (const chat::TemplateError&) {
    // The one expected failure: bad syntax, a runtime error, a limit, raise_exception().
  }
  return 0;
}
