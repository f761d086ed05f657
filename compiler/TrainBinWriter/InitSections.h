//===- InitSections.h - Initial buffer bytes as train.bin sections -*- C++ -*-//
//
// Every `init` a `qrt.buffer` can carry, turned into the section that holds
// the buffer's bytes before the first step:
//
//   #qlora.source<file, key>        the tensor's bytes in the mmapped file,
//                                   borrowed (dtype and shape checked);
//   dense_resource / dense elements the attribute's little-endian bytes;
//   #qlora.init<kaiming_uniform>    CounterRng(seed, name).uniform(i, -b, b)
//                                   with b = 1/sqrt(in), in = dim 1 of [r, in];
//   #qlora.init<zeros>              zeros, one section per size, shared;
//   float / integer scalars         their bytes.
//
// A section holds exactly the buffer's `size` bytes (the loader checks it):
// data shorter than a padded buffer is copied and zero-extended.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_COMPILER_TRAINBINWRITER_INITSECTIONS_H
#define QLORACC_COMPILER_TRAINBINWRITER_INITSECTIONS_H

#include "compiler/TrainBinWriter/TrainBinWriter.h"

#include "dialects/nf4/Nf4Dialect.h"
#include "dialects/qrt/QrtDialect.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"

#include <cstddef>
#include <span>

namespace qloracc {

/// What a buffer stores, in train.bin's terms: its `type`, or raw bytes
/// (u8 [size]) when it does not say.
struct StoredLayout {
  ::qlora::format::DType dtype = ::qlora::format::DType::U8;
  llvm::SmallVector<int64_t> shape;
  /// The element type of `type`; null for raw bytes.
  mlir::Type elementType;
  /// Bytes of the stored value (the buffer may be larger).
  uint64_t valueBytes = 0;
};

/// The layout of `buffer`. Fails with an error on the op when its `type`
/// has an element type train.bin cannot store.
mlir::FailureOr<StoredLayout> getStoredLayout(mlir::qrt::BufferOp buffer);

/// Adds one section per buffer `init` to `contents.desc.sections`, opening
/// each checkpoint file once and keeping it in `contents.checkpoints`.
class InitSectionBuilder {
public:
  explicit InitSectionBuilder(TrainBinContents &contents)
      : contents(contents) {}

  /// The index of the section holding `buffer`'s initial bytes, or -1 when
  /// it has no `init` (its contents are then whatever the step writes).
  /// `name` is the buffer's name in train.bin.
  mlir::FailureOr<int32_t> addInitSection(mlir::qrt::BufferOp buffer,
                                          llvm::StringRef name,
                                          const StoredLayout &layout);

private:
  mlir::FailureOr<int32_t> addCheckpointTensor(mlir::qrt::BufferOp buffer,
                                               llvm::StringRef name,
                                               const StoredLayout &layout,
                                               llvm::StringRef file,
                                               llvm::StringRef key);
  mlir::FailureOr<int32_t> addElements(mlir::qrt::BufferOp buffer,
                                       llvm::StringRef name,
                                       const StoredLayout &layout,
                                       mlir::ElementsAttr elements);
  mlir::FailureOr<int32_t> addNf4Pieces(mlir::qrt::BufferOp buffer,
                                        llvm::StringRef name,
                                        mlir::nf4::Nf4TensorType type,
                                        mlir::DictionaryAttr pieces);
  mlir::FailureOr<int32_t> addKaimingUniform(mlir::qrt::BufferOp buffer,
                                             llvm::StringRef name,
                                             const StoredLayout &layout);
  mlir::FailureOr<int32_t> addScalar(mlir::qrt::BufferOp buffer,
                                     llvm::StringRef name,
                                     const StoredLayout &layout,
                                     mlir::TypedAttr scalar);
  int32_t addZeros(uint64_t bytes);

  /// A section of `buffer`'s size holding `data`: borrowed when the sizes
  /// agree, else copied and zero-extended.
  int32_t addSection(mlir::qrt::BufferOp buffer, llvm::StringRef name,
                     std::span<const std::byte> data);
  int32_t addOwnedSection(llvm::StringRef name, std::vector<std::byte> data);

  /// The checkpoint at `path`, opened once; null (after an error on
  /// `buffer`) when it cannot be opened.
  const ::qlora::format::SafetensorsFile *
  openCheckpoint(mlir::qrt::BufferOp buffer, llvm::StringRef name,
                 llvm::StringRef path);

  TrainBinContents &contents;
  llvm::StringMap<const ::qlora::format::SafetensorsFile *> checkpointByPath;
  llvm::DenseMap<uint64_t, int32_t> zeroSectionBySize;
};

} // namespace qloracc

#endif // QLORACC_COMPILER_TRAINBINWRITER_INITSECTIONS_H
