// Byte-level BPE encoding as llama.cpp's llm_tokenizer_bpe: pre-tokenize into
// words, write each word's bytes in GPT-2's byte alphabet, then repeatedly
// merge the adjacent pair with the lowest merge rank (leftmost on ties).
#include <queue>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace bifurcate::tokenizer {

namespace {

struct Symbol {
  int prev, next;
  std::size_t offset, n;  // bytes of the word; n = 0 once merged into the left neighbour
};

struct Bigram {
  int left, right;
  int rank;
  std::string text;  // the merged text, to detect stale entries
};

struct LowerPriority {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

int Tokenizer::find_merge_rank(std::string_view left, std::string_view right) const {
  std::string key;
  key.reserve(left.size() + right.size() + 1);
  key.append(left).append(1, '\0').append(right);
  const auto it = merge_ranks_.find(key);
  return it == merge_ranks_.end() ? -1 : it->second;
}

void Tokenizer::encode_bpe(std::string_view text, std::vector<int32_t>& out) const {
  for (const std::string& word : pre_tokenize(pre_, text)) {
    std::string encoded;
    encoded.reserve(word.size() * 2);
    for (const char c : word) encoded += bytes_.encode(static_cast<uint8_t>(c));
    merge_bpe_word(encoded, out);
  }
}

void Tokenizer::merge_bpe_word(const std::string& word, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    if (const int32_t token = find_token(word); token >= 0) {
      out.push_back(token);
      return;
    }
  }
  std::vector<Symbol> symbols;
  for (std::size_t offset = 0; offset < word.size();) {
    const std::size_t n = std::min(utf8_sequence_length(static_cast<uint8_t>(word[offset])), word.size() - offset);
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({index - 1, offset + n == word.size() ? -1 : index + 1, offset, n});
    offset += n;
  }
  const auto text_of = [&](int i) { return std::string_view(word).substr(symbols[i].offset, symbols[i].n); };

  std::priority_queue<Bigram, std::vector<Bigram>, LowerPriority> queue;
  const auto try_add_bigram = [&](int left, int right) {
    if (left == -1 || right == -1) return;
    const int rank = find_merge_rank(text_of(left), text_of(right));
    if (rank < 0) return;
    queue.push({left, right, rank, std::string(text_of(left)) + std::string(text_of(right))});
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add_bigram(i - 1, i);

  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[bigram.left];
    Symbol& right = symbols[bigram.right];
    if (left.n == 0 || right.n == 0) continue;
    if (left.n + right.n != bigram.text.size() ||
        std::string_view(word).substr(left.offset, left.n + right.n) != bigram.text) {
      continue;  // a neighbour changed since this pair was queued
    }
    left.n += right.n;
    right.n = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    try_add_bigram(left.prev, bigram.left);
    try_add_bigram(bigram.left, left.next);
  }

  for (int i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) {
    const std::string_view text = text_of(i);
    if (const int32_t token = find_token(text); token >= 0) {
      out.push_back(token);
      continue;
    }
    // No token for the symbol: fall back to single-byte tokens, silently
    // dropping bytes the vocabulary lacks (llama.cpp does the same).
    for (const char c : text) {
      if (const int32_t token = find_token(std::string_view(&c, 1)); token >= 0) out.push_back(token);
    }
  }
}

}  // namespace bifurcate::tokenizer
