#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <array>

#include "gguf/gguf_file.h"
#include "util/error.h"

namespace bifurcate::tokenizer {

namespace {

// Token texts llama.cpp treats as end of generation (and as control tokens)
// whatever their declared type.
constexpr std::array<std::string_view, 9> kEndOfGenerationTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|eom_id|>", "<EOT>",      "_<EOT>",  "<|end_of_text|>",
};

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581 '▁'

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  std::size_t pos = 0;
  for (std::size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out += to;
  }
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

// The byte a "<0xXX>" token stands for, or -1 if `text` is not of that form.
int parse_byte_token(std::string_view text) {
  const auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  const int high = hex(text[3]), low = hex(text[4]);
  return high < 0 || low < 0 ? -1 : high * 16 + low;
}

}  // namespace

Tokenizer::Tokenizer(Vocab vocab) : vocab_(std::move(vocab)) {
  check_vocab();
  if (vocab_.kind == VocabKind::Bpe) {
    pre_ = pre_tokenizer_from_name(vocab_.pre);
    ignore_merges_ = pre_ == PreTokenizer::Llama3;
    build_merge_ranks();
  }
  index_tokens();
  pieces_.resize(vocab_.tokens.size());
  for (std::size_t id = 0; id < pieces_.size(); ++id) pieces_[id] = make_piece(static_cast<int32_t>(id));
}

void Tokenizer::check_vocab() {
  const std::size_t n = vocab_.tokens.size();
  require(n > 0, "vocabulary has no tokens");
  require(vocab_.scores.empty() || vocab_.scores.size() == n, "vocabulary has ", n, " tokens but ",
          vocab_.scores.size(), " scores");
  require(vocab_.types.empty() || vocab_.types.size() == n, "vocabulary has ", n, " tokens but ",
          vocab_.types.size(), " token types");
  if (vocab_.types.empty()) vocab_.types.assign(n, TokenType::Normal);
  for (const auto& [name, id] : {std::pair{"bos", vocab_.bos}, {"eos", vocab_.eos}, {"unk", vocab_.unk},
                                 {"pad", vocab_.pad}}) {
    require(id >= -1 && id < static_cast<int32_t>(n), "special token ", name, " = ", id,
            " is outside the vocabulary of ", n, " tokens");
  }
}

void Tokenizer::build_merge_ranks() {
  merge_ranks_.reserve(vocab_.merges.size());
  for (std::size_t rank = 0; rank < vocab_.merges.size(); ++rank) {
    // Split at the first space after the first byte, as llama.cpp does.
    std::string key = vocab_.merges[rank];
    const std::size_t space = key.find(' ', 1);
    require(space != std::string::npos, "BPE merge ", rank, " '", key, "' has no space");
    key[space] = '\0';
    merge_ranks_.emplace(std::move(key), static_cast<int>(rank));
  }
}

// Builds text -> id, the end-of-generation set and the special-token list.
void Tokenizer::index_tokens() {
  const std::size_t n = vocab_.tokens.size();
  token_ids_.reserve(n);
  for (std::size_t id = 0; id < n; ++id) {
    std::string& text = vocab_.tokens[id];
    if (text.empty()) text = str("[EMPTY_", id, "]");
    token_ids_[text] = static_cast<int32_t>(id);  // a duplicate text maps to its last id
    if (std::find(kEndOfGenerationTexts.begin(), kEndOfGenerationTexts.end(), text) != kEndOfGenerationTexts.end()) {
      end_of_generation_.insert(static_cast<int32_t>(id));
      vocab_.types[id] = TokenType::Control;
    }
  }
  if (vocab_.eos >= 0) end_of_generation_.insert(vocab_.eos);

  for (std::size_t id = 0; id < n; ++id) {
    const TokenType type = vocab_.types[id];
    if (type == TokenType::Control || type == TokenType::UserDefined || type == TokenType::Unknown) {
      special_tokens_.push_back(static_cast<int32_t>(id));
    }
  }
  // Longest first, so "<|im_end|>" wins over a token that is its prefix.
  std::stable_sort(special_tokens_.begin(), special_tokens_.end(), [&](int32_t a, int32_t b) {
    return vocab_.tokens[a].size() > vocab_.tokens[b].size();
  });
}

std::string Tokenizer::make_piece(int32_t id) const {
  const std::string& text = vocab_.tokens[id];
  switch (vocab_.types[id]) {
    case TokenType::UserDefined:
      return text;
    case TokenType::Byte:
      if (const int byte = parse_byte_token(text); byte >= 0) return std::string(1, static_cast<char>(byte));
      require(vocab_.kind == VocabKind::Bpe, "byte token ", id, " has text '", text, "', expected <0xXX>");
      [[fallthrough]];  // a BPE byte token in the byte alphabet decodes like a normal one
    case TokenType::Normal: {
      std::string piece;
      if (vocab_.kind == VocabKind::Spm) {
        piece = text;
        replace_all(piece, kSpmSpace, " ");
        return piece;
      }
      for (const uint32_t cp : decode_utf8(text)) {
        const int byte = bytes_.decode(cp);
        if (byte >= 0) {
          piece += static_cast<char>(byte);
        } else {
          append_utf8(piece, cp);  // not in the byte alphabet: keep as is
        }
      }
      return piece;
    }
    default:  // control, unknown, unused: no text
      return "";
  }
}

Tokenizer Tokenizer::from_gguf(const gguf::GgufFile& file) {
  Vocab vocab = vocab_from_gguf(file);
  try {
    return Tokenizer(std::move(vocab));
  } catch (const Error& e) {
    throw Error(str(file.path(), ": ", e.what()));
  }
}

void Tokenizer::check_token(int32_t token) const {
  require(token >= 0 && token < n_vocab(), "token id ", token, " is outside the vocabulary of ", n_vocab(),
          " tokens");
}

std::string_view Tokenizer::token_text(int32_t token) const {
  check_token(token);
  return vocab_.tokens[token];
}

TokenType Tokenizer::token_type(int32_t token) const {
  check_token(token);
  return vocab_.types[token];
}

std::string Tokenizer::token_to_piece(int32_t token) const {
  check_token(token);
  return pieces_[token];
}

int32_t Tokenizer::find_token(std::string_view text) const {
  const auto it = token_ids_.find(std::string(text));
  return it == token_ids_.end() ? -1 : it->second;
}

std::vector<Tokenizer::Fragment> Tokenizer::split_special(std::string_view text, bool parse_special) const {
  std::vector<Fragment> fragments;
  if (!text.empty()) fragments.push_back({-1, text});
  for (const int32_t id : special_tokens_) {
    const TokenType type = vocab_.types[id];
    if (!parse_special && (type == TokenType::Control || type == TokenType::Unknown)) continue;
    const std::string_view special = vocab_.tokens[id];
    std::vector<Fragment> next;
    next.reserve(fragments.size());
    for (const Fragment& f : fragments) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      for (std::size_t hit; (hit = rest.find(special)) != std::string_view::npos;) {
        if (hit > 0) next.push_back({-1, rest.substr(0, hit)});
        next.push_back({id, special});
        rest.remove_prefix(hit + special.size());
      }
      if (!rest.empty()) next.push_back({-1, rest});
    }
    fragments = std::move(next);
  }
  return fragments;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  const std::size_t bad = find_invalid_utf8(text);
  require(bad == std::string_view::npos, "cannot tokenize: invalid UTF-8 at byte offset ", bad, " of ",
          text.size());
  std::vector<int32_t> out;
  if (add_bos && vocab_.bos >= 0) out.push_back(vocab_.bos);
  // SPM puts a space before text that starts the input or follows a special token.
  bool after_special = true;
  for (const Fragment& f : split_special(text, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_special = true;
      continue;
    }
    if (vocab_.kind == VocabKind::Spm) {
      std::string escaped = vocab_.add_space_prefix && after_special ? " " : "";
      escaped += f.text;
      replace_all(escaped, " ", kSpmSpace);
      encode_spm(escaped, out);
    } else {
      encode_bpe(f.text, out);
    }
    after_special = false;
  }
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> tokens) const {
  std::string text;
  bool strip_space = vocab_.kind == VocabKind::Spm && vocab_.add_space_prefix;
  for (const int32_t token : tokens) {
    check_token(token);
    std::string_view piece = pieces_[token];
    if (strip_space && !piece.empty()) {
      if (piece.front() == ' ') piece.remove_prefix(1);
      strip_space = false;
    }
    text += piece;
  }
  return text;
}

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer, bool continues_text)
    : tokenizer_(&tokenizer), at_start_(!continues_text) {}

std::string StreamingDetokenizer::push(int32_t token) {
  std::string piece = tokenizer_->token_to_piece(token);
  if (at_start_ && !piece.empty()) {
    const Vocab& v = tokenizer_->vocab();
    if (v.kind == VocabKind::Spm && v.add_space_prefix && piece.front() == ' ') piece.erase(0, 1);
    at_start_ = false;
  }
  pending_ += piece;
  // Emit everything up to an incomplete sequence at the very end. A sequence
  // that can never complete (a bad lead or continuation byte) goes out as is,
  // so the output still equals decode().
  std::size_t keep_from = pending_.size();
  for (std::size_t back = 1; back <= 3 && back <= pending_.size(); ++back) {
    const auto byte = static_cast<uint8_t>(pending_[pending_.size() - back]);
    if ((byte & 0xC0) == 0x80) continue;  // continuation byte: look further back
    if (byte >= 0xC0 && utf8_sequence_length(byte) > back) keep_from = pending_.size() - back;
    break;
  }
  std::string out = pending_.substr(0, keep_from);
  pending_.erase(0, keep_from);
  return out;
}

std::string StreamingDetokenizer::finish() {
  std::string out = pending_.empty() ? "" : "\xEF\xBF\xBD";  // U+FFFD for a truncated sequence
  pending_.clear();
  return out;
}

}  // namespace bifurcate::tokenizer
