#include "kv/kv_layout.h"

#include "util/error.h"

namespace bifurcate::kv {

void KvLayout::validate() const {
  require(n_layers >= 1, "KvLayout: n_layers must be >= 1, got ", n_layers);
  require(n_kv_heads >= 1, "KvLayout: n_kv_heads must be >= 1, got ", n_kv_heads);
  require(head_size >= 1, "KvLayout: head_size must be >= 1, got ", head_size);
  require(block_tokens >= 1, "KvLayout: block_tokens must be >= 1, got ", block_tokens);
  require(type == kernels::KvType::f32 || type == kernels::KvType::f16, "KvLayout: unknown KvType ",
          int(type));
}

}  // namespace bifurcate::kv
