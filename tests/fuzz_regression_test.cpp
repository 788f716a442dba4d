// Inputs the fuzz targets (fuzz/) found failing, fed again to the code that
// failed. Each lives in tests/fuzz_regressions/<target>/ under a name saying
// what it does; the fuzz flavour also replays that folder as seeds of the
// target, so CI runs them under libFuzzer + ASan + UBSan as well.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "model/model.h"
#include "util/error.h"

namespace bifurcate {
namespace {

std::string regression_input(const std::string& target, const std::string& name) {
  return (std::filesystem::path(BIFURCATE_TESTS_DIR) / "fuzz_regressions" / target / name).string();
}

// fuzz_gguf_model, timeout (173 s under ASan): a 20-tensor file whose
// llama.block_count was mutated to 64000. bind_model_weights looked up 9-10
// tensors per declared layer and listed each as missing, building 64000
// layer bindings and a ~20 MB error message. Fixed by checking block_count
// against the tensor table in read_model_config, before anything is sized by it.
TEST(FuzzRegression, GgufBlockCountBeyondTensorTableIsRefusedBeforeBinding) {
  const std::string path = regression_input("gguf_model", "block-count-64000.gguf");
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  const auto start = std::chrono::steady_clock::now();
  try {
    model::Model::load(path);
    FAIL() << "a file with 20 tensors and block_count 64000 loaded";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("block_count' = 64000"), std::string::npos) << message.substr(0, 300);
    EXPECT_NE(message.find("the file holds 20"), std::string::npos) << message.substr(0, 300);
    EXPECT_LT(message.size(), 1000u) << "the error lists every missing tensor";
  }
  // Generous: the check is immediate; binding 64000 layers took seconds.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

}  // namespace
}  // namespace bifurcate
