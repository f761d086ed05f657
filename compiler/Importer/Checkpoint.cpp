//===- Checkpoint.cpp - The tensors of a Hugging Face checkpoint ----------===//
#include "compiler/Importer/Checkpoint.h"

#include "compiler/Importer/QuantizedCheckpoint.h"

#include "runtime/format/Json.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"

#include <set>

using namespace qloracc::importer;
using qlora::format::DType;
using qlora::format::formatShape;
using qlora::format::SafetensorsFile;

static llvm::Error checkpointError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

/// The shard file names, in order: those the index lists, or the single
/// model.safetensors.
static llvm::Expected<std::vector<std::string>>
listShardFiles(llvm::StringRef directory) {
  llvm::SmallString<256> index(directory), single(directory);
  llvm::sys::path::append(index, "model.safetensors.index.json");
  llvm::sys::path::append(single, "model.safetensors");
  if (!llvm::sys::fs::exists(index)) {
    if (!llvm::sys::fs::exists(single))
      return checkpointError(
          directory +
          ": no model.safetensors or model.safetensors.index.json (expected "
          "a checkpoint written by transformers' save_pretrained)");
    return std::vector<std::string>{single.str().str()};
  }
  std::string error;
  std::optional<nlohmann::json> root =
      qlora::format::readJsonFile(index.str().str(), error);
  if (!root)
    return checkpointError(error);
  auto weightMap = root->is_object() ? root->find("weight_map") : root->end();
  if (!root->is_object() || weightMap == root->end() || !weightMap->is_object())
    return checkpointError(index + ": expected an object with a 'weight_map' "
                                   "object of tensor name -> file name");
  std::set<std::string> names;
  for (auto &[key, file] : weightMap->items()) {
    if (!file.is_string() ||
        file.get<std::string>().find('/') != std::string::npos)
      return checkpointError(index + ": weight_map['" + key +
                             "']: expected a file name in the same directory, "
                             "found " +
                             file.dump());
    names.insert(file.get<std::string>());
  }
  std::vector<std::string> paths;
  for (const std::string &name : names) {
    llvm::SmallString<256> path(directory);
    llvm::sys::path::append(path, name);
    paths.push_back(path.str().str());
  }
  return paths;
}

llvm::Expected<std::unique_ptr<Checkpoint>>
Checkpoint::open(llvm::StringRef directory,
                 llvm::ArrayRef<FrozenTensor> expected,
                 llvm::ArrayRef<std::string> ignorable, bool acceptBnb4Bit) {
  llvm::Expected<std::vector<std::string>> shardPaths =
      listShardFiles(directory);
  if (!shardPaths)
    return shardPaths.takeError();

  auto checkpoint = std::unique_ptr<Checkpoint>(new Checkpoint());
  for (const std::string &path : *shardPaths) {
    std::string error;
    std::unique_ptr<SafetensorsFile> file = SafetensorsFile::open(path, error);
    if (!file)
      return checkpointError(error);
    for (const qlora::format::TensorView &tensor : file->tensors()) {
      auto [it, inserted] = checkpoint->tensors.try_emplace(
          tensor.name, TensorLocation{file.get(), &tensor});
      if (!inserted)
        return checkpointError(path + ": tensor '" + tensor.name +
                               "' is also in " + it->second.file->path());
    }
    checkpoint->files.push_back(std::move(file));
  }

  llvm::StringSet<> known;
  qlora::format::TensorLookup lookup = checkpoint->lookup();
  for (const FrozenTensor &want : expected) {
    known.insert(want.name);
    if (qlora::format::hasBnbNf4QuantState(lookup, want.name)) {
      llvm::Expected<qlora::format::BnbNf4Tensor> nf4 =
          readQuantizedTensor(lookup, want, acceptBnb4Bit);
      if (!nf4)
        return nf4.takeError();
      checkpoint->tensors.find(want.name)->second.nf4 = std::move(*nf4);
      for (std::string_view suffix : qlora::format::kBnbNf4CompanionSuffixes)
        known.insert(want.name + std::string(suffix));
      continue;
    }
    auto it = checkpoint->tensors.find(want.name);
    if (it == checkpoint->tensors.end())
      return checkpointError(directory + ": missing tensor '" + want.name +
                             "' (expected shape " + formatShape(want.shape) +
                             ")");
    const qlora::format::TensorView &have = *it->second.tensor;
    const std::string &file = it->second.file->path();
    if (have.shape != want.shape)
      return checkpointError(file + ": tensor '" + want.name +
                             "': expected shape " + formatShape(want.shape) +
                             ", found " + formatShape(have.shape));
    if (!llvm::is_contained({DType::F32, DType::F16, DType::BF16}, have.dtype))
      return checkpointError(file + ": tensor '" + want.name +
                             "': expected dtype F32, F16 or BF16, found " +
                             std::string(dtypeName(have.dtype)));
  }
  for (const std::string &name : ignorable)
    known.insert(name);
  // File order, not hash order, so that the first extra reported is stable.
  for (const auto &file : checkpoint->files)
    for (const qlora::format::TensorView &tensor : file->tensors())
      if (!known.contains(tensor.name) &&
          !llvm::StringRef(tensor.name).ends_with(".rotary_emb.inv_freq"))
        return checkpointError(file->path() + ": unexpected tensor '" +
                               tensor.name +
                               "' (not part of the model config.json "
                               "describes)");
  return checkpoint;
}

qlora::format::TensorLookup Checkpoint::lookup() const {
  return [this](const std::string &name) -> qlora::format::LocatedTensor {
    auto it = tensors.find(name);
    if (it == tensors.end())
      return {};
    return {it->second.tensor, &it->second.file->path()};
  };
}

const TensorLocation *Checkpoint::find(llvm::StringRef name) const {
  auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}
