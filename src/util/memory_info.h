// What the machine's memory allows, from /proc/meminfo.
#pragma once

#include <cstddef>

namespace bifurcate {

// MemAvailable in bytes, or 0 when unknown.
std::size_t available_memory_bytes();

// The default KV cache budget: half of MemAvailable when asked (after the
// model is loaded), at least 64 MiB. The other half stays for the OS, the
// activations and whatever else runs on the machine.
std::size_t default_kv_budget_bytes();

}  // namespace bifurcate
