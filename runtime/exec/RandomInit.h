//===- RandomInit.h - Initial values drawn at load time ---------*- C++ -*-===//
//
// The bytes of a buffer whose train.bin entry carries a RandomInit
// (`qloracc --random-weights`) instead of an init section: see train.fbs for
// what each kind draws. Deterministic: value i is a pure function of
// (seed, stream, i), so every run, thread count and backend gets the same
// weights, and KaimingUniform equals the section qloracc would have written.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_EXEC_RANDOMINIT_H
#define QLORACC_RUNTIME_EXEC_RANDOMINIT_H

#include <cstddef>
#include <string>
#include <vector>

namespace qlora::fb {
struct Buffer;
} // namespace qlora::fb

namespace qlora::exec {

/// Fills `bytes` (resized to the value's size, at most the buffer's) with
/// `buffer`'s random_init draw. Returns false and sets `error` (naming the
/// buffer) when the kind, dtype or shape does not fit the buffer.
bool drawRandomInit(const fb::Buffer &buffer, std::vector<std::byte> &bytes,
                    std::string &error);

} // namespace qlora::exec

#endif // QLORACC_RUNTIME_EXEC_RANDOMINIT_H
