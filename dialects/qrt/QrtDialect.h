//===- QrtDialect.h - The qrt dialect ---------------------------*- C++ -*-===//
#ifndef QLORACC_DIALECTS_QRT_QRTDIALECT_H
#define QLORACC_DIALECTS_QRT_QRTDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/qrt/QrtDialect.h.inc"
#include "dialects/qrt/QrtEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/qrt/QrtAttrs.h.inc"

#define GET_TYPEDEF_CLASSES
#include "dialects/qrt/QrtTypes.h.inc"

#define GET_OP_CLASSES
#include "dialects/qrt/QrtOps.h.inc"

#include "runtime/format/DType.h"
#include "runtime/format/KernelParams.h"

namespace mlir::qrt {

/// Bytes a buffer needs to hold `type`: a statically shaped tensor or a
/// scalar of integers or floats (sub-byte element types rounded up to whole
/// bytes), or an `!nf4.tensor` (its one-buffer layout); std::nullopt for
/// anything else.
std::optional<int64_t> getStoredByteSize(Type type);

/// Whether buffers of `bufferClass` hold their contents across the whole
/// step (weights, LoRA matrices, optimizer moments, io) rather than between
/// a first and a last use (activations, gradients, workspaces).
bool isPersistent(BufferClass bufferClass);

/// The train.bin / safetensors dtype of an element type (f64, f32, f16,
/// bf16, i1, i8, ui8, i16, i32, i64); std::nullopt for any other.
std::optional<::qlora::format::DType> getFormatDType(Type type);

/// `kernel`'s params in KernelAbi.h's kinds (i64, f64, string, i64 array;
/// a bool becomes 0 or 1), as train.bin stores them and the CUDA code
/// generator instantiates them. Fails, with an error on the kernel, on an
/// attribute no kernel parameter can be.
FailureOr<::qlora::format::KernelParams> getKernelParams(KernelOp kernel);

} // namespace mlir::qrt

#endif // QLORACC_DIALECTS_QRT_QRTDIALECT_H
