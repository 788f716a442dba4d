#include "model/model.h"

namespace bifurcate::model {

Model::Model(gguf::GgufFile file)
    : file_(std::move(file)),
      config_(read_model_config(file_)),
      weights_(bind_model_weights(file_, config_)) {}

std::unique_ptr<Model> Model::load(const std::string& path) {
  return std::unique_ptr<Model>(new Model(gguf::GgufFile::open(path, gguf::FileResidency::huge_pages)));
}

}  // namespace bifurcate::model
