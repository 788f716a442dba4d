// Fuzz-style robustness: random mutations of the real chat templates (and a
// few of our own) are parsed and rendered; each must either render or throw
// TemplateError — never crash, hang, leak or throw anything else (run it in
// the sanitize build for ASan + UBSan). The seed is printed; rerun a failure
// with BIFURCATE_FUZZ_SEED=<seed>.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>

#include "chat_test_support.h"

namespace bifurcate::chat::testing {
namespace {

std::vector<std::string> corpus() {
  std::vector<std::string> out = {
      std::string(chatml_template()),
      "{% for m in messages %}{% if loop.first and m.role != 'system' %}{{ raise_exception('x') }}{% endif %}"
      "{{ m.content|trim|tojson(indent=2) }}{% set ns = namespace(a=[]) %}{% set ns.a = ns.a + [m] %}{% endfor %}",
      "{% macro f(x, d=1) %}{% if d < 5 %}{{ f(x ~ 'a', d + 1) }}{% endif %}{{ x[::-1] }}{% endmacro %}{{ f('q') }}"
      "{% raw %}{{ raw }}{% endraw %}{# c #}{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|join(', ') }}",
  };
  const std::string dir = chat_templates_dir();
  if (std::filesystem::is_directory(dir))
    for (const auto& entry : std::filesystem::directory_iterator(dir))
      if (entry.path().extension() == ".jinja") out.push_back(read_file(entry.path().string()));
  return out;
}

// Fragments that make mutations look like template syntax.
const std::vector<std::string> kFragments = {
    "{%", "%}", "{{", "}}", "{#", "#}", "-", "+", "(", ")", "[", "]", "{", "}", "'", "\"", "\\", ",", ":", ".",
    "|", "~", "*", "**", "//", "%", " is ", " not ", " in ", " and ", " or ", " if ", " else ", "for ", "endfor",
    "if ", "endif", "elif ", "set ", "endset", "macro ", "endmacro", "call ", "endcall", "raw", "endraw",
    "filter ", "endfilter", "break", "continue", "loop.", "namespace(", "range(", "messages", "tools", "x",
    "|tojson", "|items", "|trim", "|join", "|length", "|indent(4)", "|map(attribute='a')", "[::-1]", "[0]",
    "0", "1e308", "-1", "999999999999", ".format(1)", "'{99999999999999999999999}'", "%s", "|format(1)", "none", "true", "\n", "\t", " ", "\xc3\xa9", "\xf0\x9f\x9a\x80", "\xff",
};

std::string mutate(std::string s, std::mt19937_64& rng) {
  auto pick = [&](std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(rng() % n); };
  int edits = rng() % 4 == 0 ? 1 + static_cast<int>(rng() % 8) : 1 + static_cast<int>(rng() % 2);
  for (int e = 0; e < edits; ++e) {
    std::size_t at = pick(s.size() + 1);
    switch (rng() % 6) {
      case 0:  // delete a range
        s.erase(at, 1 + pick(16));
        break;
      case 1: {  // duplicate a range
        std::string part = s.substr(at, 1 + pick(64));
        s.insert(pick(s.size() + 1), part);
        break;
      }
      case 2:
      case 3:  // insert syntax
        s.insert(at, kFragments[pick(kFragments.size())]);
        break;
      case 4:  // overwrite a byte
        if (!s.empty()) s[pick(s.size())] = static_cast<char>(rng() & 0xff);
        break;
      case 5: {  // move a range
        std::size_t len = 1 + pick(32);
        std::string part = s.substr(at, len);
        s.erase(at, len);
        s.insert(pick(s.size() + 1), part);
        break;
      }
    }
  }
  return s;
}

TEST(ChatTemplateFuzz, MutatedTemplatesNeverCrashOrHang) {
  std::uint64_t seed = std::random_device{}();
  if (const char* env = std::getenv("BIFURCATE_FUZZ_SEED")) seed = std::strtoull(env, nullptr, 10);
  std::cout << "[ fuzz ] seed " << seed << " (rerun with BIFURCATE_FUZZ_SEED=" << seed << ")\n";
  std::mt19937_64 rng(seed);

  const std::vector<std::string> templates = corpus();
  const auto conversations = nlohmann::ordered_json::parse(read_file(tests_dir() + "/chat_conversations.json"));
  RenderOptions options = reference_options();
  options.limits.max_steps = 200000;
  options.limits.max_output_bytes = 1 << 20;

  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto budget = std::chrono::seconds(6);
  std::size_t cases = 0, parsed = 0, rendered = 0;
  double slowest = 0;
  while (Clock::now() - start < budget && cases < 20000) {
    const std::string source = mutate(templates[rng() % templates.size()], rng);
    const auto& conv = conversations[rng() % conversations.size()];
    options.add_generation_prompt = rng() % 2;
    options.tools_ordered = conv.contains("tools") ? conv["tools"] : nlohmann::ordered_json();
    const auto t0 = Clock::now();
    try {
      ChatTemplate tmpl(source);
      ++parsed;
      tmpl.render(conv["messages"], options);
      ++rendered;
    } catch (const TemplateError&) {
      // refused cleanly: what we want for bad input
    } catch (const std::exception& e) {
      const std::string path = ::testing::TempDir() + "chat_fuzz_failure.jinja";
      write_file(path, source);
      FAIL() << "seed " << seed << " case " << cases << ": " << typeid(e).name() << ": " << e.what()
             << " (template saved to " << path << ")";
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    slowest = std::max(slowest, seconds);
    // A hang shows as one case taking far longer than the step limit allows.
    if (seconds > 5.0) {
      const std::string path = ::testing::TempDir() + "chat_fuzz_slow.jinja";
      write_file(path, source);
      FAIL() << "seed " << seed << " case " << cases << " took " << seconds << " s (template saved to " << path << ")";
    }
    ++cases;
  }
  std::cout << "[ fuzz ] " << cases << " mutated templates: " << parsed << " parsed, " << rendered
            << " rendered, the rest refused with TemplateError; slowest " << slowest * 1e3 << " ms\n";
  EXPECT_GT(cases, 100u);
}

}  // namespace
}  // namespace bifurcate::chat::testing
