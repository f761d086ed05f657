//===- DatasetFiles.h - The readers behind TokenDataset ---------*- C++ -*-===//
//
// Private to QloraData: one opener per file kind. TokenDataset::open checks
// the shape arguments and picks the opener; each opener validates the whole
// file and reports errors in TokenDataset.h's style.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_DATA_DATASETFILES_H
#define QLORACC_RUNTIME_DATA_DATASETFILES_H

#include "runtime/data/TokenDataset.h"

#include <nlohmann/json.hpp>

namespace qlora::data::detail {

/// The shape every opener needs, already checked to be positive, with
/// vocab <= 2^31 so that every valid id fits int32_t.
struct DatasetShape {
  int64_t batch;
  int64_t seq;
  int64_t vocab;
};

/// `format` is U16 or U32.
std::unique_ptr<TokenDataset> openRawTokens(const std::string &path,
                                            DataFormat format,
                                            const DatasetShape &shape,
                                            std::string &error);

std::unique_ptr<TokenDataset> openJsonl(const std::string &path,
                                        const DatasetShape &shape,
                                        std::string &error);

/// "<path>: N <what> make fewer than one batch of B sequences" style check
/// shared by both readers; `found` describes what the file holds.
bool checkEnoughForOneBatch(const std::string &path, int64_t numSequences,
                            const std::string &found, const DatasetShape &shape,
                            std::string &error);

/// "number 1.5", "string \"x\"": a JSON value for an error message, cut
/// short so that a long value cannot swamp the line.
std::string describeJson(const nlohmann::json &value);

} // namespace qlora::data::detail

#endif // QLORACC_RUNTIME_DATA_DATASETFILES_H
