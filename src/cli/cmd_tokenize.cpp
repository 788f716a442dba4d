// `bifurcate tokenize` and `bifurcate detokenize`: text <-> token ids with a
// model's own vocabulary, to compare against another engine's tokenizer.
// Only the vocabulary is read, so vocab-only GGUF files work too.
#include <iostream>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/json_output.h"
#include "cli/engine_flags.h"
#include "cli/model_session.h"
#include "gguf/gguf_file.h"
#include "model/model_config.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace bifurcate::cli {
namespace {

struct TokenizeArgs {
  std::string model;
  std::string prompt;
  std::string file;
  bool no_bos = false;
  bool parse_special = false;
  bool json = false;

  template <class Visitor>
  void for_each(Visitor& v) {
    v(model, "model", 'm', "GGUF file with a vocabulary (default: the built-in stories260K model)");
    v(prompt, "prompt", 'p', "text to tokenize");
    v(file, "file", 'f', "read the text from this file (exact bytes, no newline added)");
    v(no_bos, "no-bos", '\0', "do not prepend BOS even if the vocabulary asks for it");
    v(parse_special, "parse-special", '\0', "recognise control-token texts such as <|endoftext|> in the text");
    v(json, "json", '\0', "print JSON: every token's id, piece and vocabulary text");
  }
};

struct DetokenizeArgs {
  std::string model;
  std::vector<std::string> ids;
  bool json = false;

  template <class Visitor>
  void for_each(Visitor& v) {
    v(model, "model", 'm', "GGUF file with a vocabulary (default: the built-in stories260K model)");
    v.positional_list(ids, "ID", "token ids (separated by spaces and/or commas)");
    v(json, "json", '\0', "print JSON {\"text\": ...} (text mode prints the exact bytes and one newline)");
  }
};

tokenizer::Tokenizer load_tokenizer(const std::string& model_flag) {
  const std::string path = model_flag.empty() ? default_model_path() : model_flag;
  const gguf::GgufFile file = gguf::GgufFile::open(path);
  if (file.get_string_or("tokenizer.ggml.model", "none") == "none") {
    throw Error(str(path, " has no vocabulary (tokenizer.ggml.model is 'none'; a model made by "
                    "`bifurcate make-model` without --vocab): make it again with --vocab VOCAB.gguf"));
  }
  return tokenizer::Tokenizer::from_gguf(file);
}

void print_tokens_json(const tokenizer::Tokenizer& tok, const std::vector<int32_t>& tokens) {
  Json list = Json::array();
  for (int32_t id : tokens) {
    // "text": its entry in the vocabulary
    list.push_back({{"id", id}, {"piece", token_piece_json(tok.token_to_piece(id))}, {"text", tok.token_text(id)}});
  }
  print_json(std::cout, {{"n_tokens", tokens.size()}, {"tokens", std::move(list)}});
}

}  // namespace

int run_tokenize(int argc, char** argv) {
  TokenizeArgs args;
  FlagParser parser = make_flag_parser(args, "tokenize", "Print the token ids of a text under a model's vocabulary.");
  if (parser.parse(argc, argv) == ParseResult::kShowHelp) {
    std::cout << parser.help();
    return 0;
  }
  const std::string text = input_text(args.prompt, args.file);
  const tokenizer::Tokenizer tok = load_tokenizer(args.model);
  const std::vector<int32_t> tokens = tok.encode(text, !args.no_bos && tok.add_bos_by_default(), args.parse_special);
  if (args.json) {
    print_tokens_json(tok, tokens);
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) std::cout << (i ? " " : "") << tokens[i];
    std::cout << '\n';
  }
  return 0;
}

int run_detokenize(int argc, char** argv) {
  DetokenizeArgs args;
  FlagParser parser = make_flag_parser(args, "detokenize", "Print the text of a list of token ids.");
  if (parser.parse(argc, argv) == ParseResult::kShowHelp) {
    std::cout << parser.help();
    return 0;
  }
  std::string joined;
  for (const std::string& id : args.ids) joined += id + " ";
  const std::vector<int32_t> tokens = parse_token_ids(joined, "ID");
  const tokenizer::Tokenizer tok = load_tokenizer(args.model);
  model::require_in_vocabulary(tokens, tok.n_vocab());
  const std::string text = tok.decode(tokens);
  if (args.json) {
    print_json(std::cout, {{"text", text}});
  } else {
    std::cout << text << '\n';
  }
  return 0;
}

}  // namespace bifurcate::cli
