// What the machine's memory allows, from /proc/meminfo.
#pragma once

#include <cstddef>

namespace bifurcate {

// MemAvailable in bytes, or 0 when unknown.
std::size_t available_memory_bytes();

}  // namespace bifurcate
