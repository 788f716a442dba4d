// `bifurcate chat-template`: renders a chat template for every conversation
// of a JSON file, with add_generation_prompt true then false, and prints
// what ../shared/testdata/chat-templates/reference_render.py prints (the
// same JSON, byte for byte, with --json) so the two can be diffed.
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "cli/args.h"
#include "cli/chat_prompt.h"
#include "cli/commands.h"
#include "util/error.h"

namespace bifurcate::cli {
namespace {

struct ChatTemplateArgs {
  std::string template_file;
  std::string model;
  std::string conversations;
  std::string bos = "<s>";
  std::string eos = "</s>";
  std::string date = "2026-01-02";
  bool json = false;

  template <class Visitor>
  void for_each(Visitor& v) {
    v(template_file, "template", 't', "Jinja chat template file (or give --model)");
    v(model, "model", 'm', "GGUF file whose tokenizer.chat_template, BOS and EOS texts are used");
    v(conversations, "conversations", 'c',
      "JSON list of {\"name\", \"messages\", optional \"tools\"} (reference_render.py's input)", Need::kRequired);
    v(bos, "bos", '\0', "bos_token text (with --model: default the model's)");
    v(eos, "eos", '\0', "eos_token text (with --model: default the model's)");
    v(date, "date", '\0',
      "the day strftime_now() and date_string see, YYYY-MM-DD or 'today' (default: reference_render.py's)");
    v(json, "json", '\0', "print reference_render.py's JSON list instead of the texts");
  }
};

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  require(bool(in), "cannot open ", what, " '", path, "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::optional<std::chrono::sys_seconds> parse_date(const std::string& text) {
  if (text == "today") return std::nullopt;
  int y = 0, m = 0, d = 0;
  char extra = 0;
  if (std::sscanf(text.c_str(), "%d-%d-%d%c", &y, &m, &d, &extra) != 3)
    throw UsageError(str("--date: expected YYYY-MM-DD or 'today', got '", text, "'"));
  std::chrono::year_month_day day{std::chrono::year(y), std::chrono::month(static_cast<unsigned>(m)),
                                  std::chrono::day(static_cast<unsigned>(d))};
  if (!day.ok()) throw UsageError(str("--date: '", text, "' is not a calendar date"));
  return std::chrono::sys_seconds(std::chrono::sys_days(day).time_since_epoch());
}

}  // namespace

int run_chat_template(int argc, char** argv) {
  ChatTemplateArgs args;
  FlagParser parser = make_flag_parser(args, "chat-template",
                                       "Render a chat template for each conversation of a JSON file, as "
                                       "transformers' apply_chat_template does.");
  if (parser.parse(argc, argv) == ParseResult::kShowHelp) {
    std::cout << parser.help();
    return 0;
  }
  if (args.template_file.empty() == args.model.empty())
    throw UsageError("give exactly one of --template FILE and --model FILE");

  PromptTemplate prompt;
  if (!args.model.empty()) {
    prompt = template_from_model(args.model);
    require(!prompt.from_fallback, args.model, " has no tokenizer.chat_template");
    // Flags given explicitly win over the model's texts.
    bool bos_given = false, eos_given = false;
    for (int i = 1; i < argc; ++i) {
      std::string_view a = argv[i];
      bos_given |= a == "--bos" || a.rfind("--bos=", 0) == 0;
      eos_given |= a == "--eos" || a.rfind("--eos=", 0) == 0;
    }
    if (bos_given) prompt.bos_token = args.bos;
    if (eos_given) prompt.eos_token = args.eos;
  } else {
    prompt.source = read_file(args.template_file, "template");
    prompt.bos_token = args.bos;
    prompt.eos_token = args.eos;
  }

  nlohmann::ordered_json conversations;
  try {
    conversations = nlohmann::ordered_json::parse(read_file(args.conversations, "conversations file"));
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(str(args.conversations, ": not valid JSON: ", e.what()));
  }
  require(conversations.is_array(), args.conversations, ": expected a JSON list of conversations");

  const chat::ChatTemplate tmpl(prompt.source);
  chat::RenderOptions options;
  options.bos_token = prompt.bos_token;
  options.eos_token = prompt.eos_token;
  options.now = parse_date(args.date);
  // reference_render.py passes date_string (Llama 3.1 prints it as "Today Date").
  options.extra_variables = {{"date_string", format_date_string(options.now)}};

  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const auto& conv : conversations) {
    require(conv.is_object() && conv.contains("name") && conv.contains("messages"), args.conversations,
            ": each conversation needs \"name\" and \"messages\"");
    for (bool agp : {true, false}) {
      nlohmann::ordered_json rec = {{"name", conv["name"]}, {"add_generation_prompt", agp}};
      options.add_generation_prompt = agp;
      options.tools_ordered = conv.contains("tools") ? conv["tools"] : nlohmann::ordered_json();
      try {
        rec["text"] = tmpl.render(conv["messages"], options);
      } catch (const chat::TemplateError& e) {
        rec["error"] = e.message();
      }
      if (!args.json) {
        std::cout << "== " << conv["name"].dump() << " add_generation_prompt=" << (agp ? "true" : "false") << '\n';
        if (rec.contains("error")) {
          std::cout << "error: " << rec["error"].get<std::string>() << '\n';
        } else {
          std::cout << rec["text"].get<std::string>() << '\n';
        }
      }
      out.push_back(std::move(rec));
    }
  }
  if (args.json) std::cout << out.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  return 0;
}

}  // namespace bifurcate::cli
