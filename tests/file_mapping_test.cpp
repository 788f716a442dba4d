// FileMapping: the bytes are the file's whichever way they are held —
// mapped, read into 2 MiB-aligned anonymous memory (huge pages), or read
// from a pipe.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <thread>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "gguf_test_support.h"
#include "util/error.h"

namespace bifurcate::gguf {
namespace {

using test_support::temp_path;

// A file of `size` bytes whose byte i is a hash of i (no two 4 KiB pages alike).
std::vector<uint8_t> write_pattern_file(const std::string& path, std::size_t size) {
  std::vector<uint8_t> bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = uint8_t((i * 2654435761u) >> 13);
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(size));
  return bytes;
}

void expect_same_bytes(const FileMapping& m, const std::vector<uint8_t>& want) {
  ASSERT_EQ(m.size(), want.size());
  ASSERT_NE(m.data(), nullptr);
  // Every byte: a mismatch anywhere (a short read, a wrong offset) fails.
  std::size_t first_bad = want.size();
  for (std::size_t i = 0; i < want.size() && first_bad == want.size(); ++i)
    if (m.data()[i] != want[i]) first_bad = i;
  EXPECT_EQ(first_bad, want.size()) << "first differing byte";
}

TEST(FileMapping, LargeFileReadIntoAlignedMemoryHoldsTheFileBytes) {
  const std::string path = temp_path("mapping_large.bin");
  const std::size_t size = (std::size_t(65) << 20) + 12345;  // above the 64 MiB threshold, ragged
  const std::vector<uint8_t> bytes = write_pattern_file(path, size);
  FileMapping copy(path, FileResidency::huge_pages);
  EXPECT_TRUE(copy.copied()) << "a 65 MiB file should fit half of this machine's available memory";
  EXPECT_EQ(reinterpret_cast<uintptr_t>(copy.data()) % (uintptr_t(2) << 20), 0u);
  expect_same_bytes(copy, bytes);
  const FileMapping mapped(path, FileResidency::mapped);
  EXPECT_FALSE(mapped.copied());
  expect_same_bytes(mapped, bytes);
  FileMapping moved(std::move(copy));  // ownership moves with the object
  EXPECT_TRUE(moved.copied());
  expect_same_bytes(moved, bytes);
  std::remove(path.c_str());
}

TEST(FileMapping, SmallFilesAreMappedEvenWhenHugePagesAreAsked) {
  const std::string path = temp_path("mapping_small.bin");
  const std::vector<uint8_t> bytes = write_pattern_file(path, 100000);
  const FileMapping m(path, FileResidency::huge_pages);
  EXPECT_FALSE(m.copied());
  expect_same_bytes(m, bytes);
  std::remove(path.c_str());
}

TEST(FileMapping, PipeIsReadToItsEnd) {
  const std::string source = temp_path("mapping_pipe_source.bin");
  const std::string fifo = temp_path("mapping_pipe.fifo");
  // Past the first 64 MiB buffer, ragged: the buffer grows while data is in it.
  const std::vector<uint8_t> bytes = write_pattern_file(source, (std::size_t(64) << 20) + 4099);
  std::remove(fifo.c_str());
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] {
    std::ofstream out(fifo, std::ios::binary);  // blocks until the reader opens the pipe
    for (std::size_t at = 0; at < bytes.size(); at += 1000003)  // in pieces, as a pipe delivers them
      out.write(reinterpret_cast<const char*>(bytes.data() + at), std::streamsize(std::min<std::size_t>(1000003, bytes.size() - at)));
  });
  const FileMapping m(fifo, FileResidency::huge_pages);
  writer.join();
  EXPECT_TRUE(m.copied());
  expect_same_bytes(m, bytes);
  std::remove(fifo.c_str());
  std::remove(source.c_str());
}

TEST(FileMapping, MissingFileNamesThePath) {
  try {
    FileMapping m(temp_path("does_not_exist.bin"), FileResidency::huge_pages);
    FAIL() << "opened a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does_not_exist.bin"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace bifurcate::gguf
