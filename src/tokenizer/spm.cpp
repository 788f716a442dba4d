// SentencePiece encoding as llama.cpp's llm_tokenizer_spm: start from UTF-8
// characters, repeatedly merge the adjacent pair whose concatenation is the
// vocabulary token with the highest score (leftmost on ties), then emit each
// symbol as its token, or split it back along the merges that built it, or
// finally as <0xXX> byte tokens.
#include <functional>
#include <queue>
#include <unordered_map>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace bifurcate::tokenizer {

namespace {

// A run of the text; merged symbols keep the left one's slot, the right one
// gets n = 0. prev/next link the live symbols (-1 at the ends).
struct Symbol {
  int prev, next;
  std::size_t offset, n;
};

struct Bigram {
  int left, right;
  float score;
  std::size_t size;  // bytes of the merged text, to detect stale entries
};

struct LowerPriority {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

class SpmSession {
 public:
  SpmSession(std::string_view text, const std::function<int32_t(std::string_view)>& find,
             const std::vector<float>& scores)
      : text_(text), find_(find), scores_(scores) {}

  // Merges until no adjacent pair forms a token.
  void run() {
    for (std::size_t offset = 0; offset < text_.size();) {
      const std::size_t n = std::min(utf8_sequence_length(static_cast<uint8_t>(text_[offset])), text_.size() - offset);
      const int index = static_cast<int>(symbols_.size());
      symbols_.push_back({index - 1, offset + n == text_.size() ? -1 : index + 1, offset, n});
      offset += n;
    }
    for (int i = 1; i < static_cast<int>(symbols_.size()); ++i) try_add_bigram(i - 1, i);
    while (!queue_.empty()) {
      const Bigram bigram = queue_.top();
      queue_.pop();
      Symbol& left = symbols_[bigram.left];
      Symbol& right = symbols_[bigram.right];
      if (left.n == 0 || right.n == 0 || left.n + right.n != bigram.size) continue;
      left.n += right.n;
      right.n = 0;
      left.next = right.next;
      if (right.next >= 0) symbols_[right.next].prev = bigram.left;
      try_add_bigram(left.prev, bigram.left);
      try_add_bigram(bigram.left, left.next);
    }
  }

  // Emits the tokens of every live symbol; `byte_token` maps an unknown byte.
  template <class ByteToken>
  void emit(std::vector<int32_t>& out, const ByteToken& byte_token) const {
    for (int i = symbols_.empty() ? -1 : 0; i != -1; i = symbols_[i].next) resegment(symbols_[i], out, byte_token);
  }

 private:
  std::string_view text_of(const Symbol& s) const { return text_.substr(s.offset, s.n); }

  void try_add_bigram(int left, int right) {
    if (left == -1 || right == -1) return;
    const std::string_view merged = text_.substr(symbols_[left].offset, symbols_[left].n + symbols_[right].n);
    const int32_t token = find_(merged);
    if (token < 0) return;
    queue_.push({left, right, scores_.empty() ? 0.0f : scores_[token], merged.size()});
    rev_merge_[std::string(merged)] = {left, right};
  }

  // As llama.cpp: the recorded pair is looked up in the symbols' current state.
  template <class ByteToken>
  void resegment(const Symbol& symbol, std::vector<int32_t>& out, const ByteToken& byte_token) const {
    const std::string_view text = text_of(symbol);
    if (const int32_t token = find_(text); token >= 0) {
      out.push_back(token);
      return;
    }
    const auto it = rev_merge_.find(std::string(text));
    if (it == rev_merge_.end()) {
      for (const char c : text) out.push_back(byte_token(static_cast<uint8_t>(c)));
      return;
    }
    resegment(symbols_[it->second.first], out, byte_token);
    resegment(symbols_[it->second.second], out, byte_token);
  }

  std::string_view text_;
  const std::function<int32_t(std::string_view)>& find_;
  const std::vector<float>& scores_;
  std::vector<Symbol> symbols_;
  std::priority_queue<Bigram, std::vector<Bigram>, LowerPriority> queue_;
  std::unordered_map<std::string, std::pair<int, int>> rev_merge_;
};

}  // namespace

int32_t Tokenizer::spm_byte_token(uint8_t byte) const {
  static constexpr char kHex[] = "0123456789ABCDEF";
  const char name[] = {'<', '0', 'x', kHex[byte >> 4], kHex[byte & 15], '>'};
  if (const int32_t token = find_token(std::string_view(name, sizeof name)); token >= 0) return token;
  const char raw = static_cast<char>(byte);
  if (const int32_t token = find_token(std::string_view(&raw, 1)); token >= 0) return token;
  throw Error(str("SPM vocabulary has no token for byte 0x", kHex[byte >> 4], kHex[byte & 15],
                  " (neither <0x..> nor the raw byte)"));
}

void Tokenizer::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
  const std::function<int32_t(std::string_view)> find = [this](std::string_view s) { return find_token(s); };
  SpmSession session(text, find, vocab_.scores);
  session.run();
  session.emit(out, [this](uint8_t byte) { return spm_byte_token(byte); });
}

}  // namespace bifurcate::tokenizer
