//===- Nf4Layout.h - One NF4 tensor's bytes in one buffer -------*- C++ -*-===//
//
// How an NF4 tensor is stored in a single runtime buffer (a train.bin
// section, a kernel argument): bitsandbytes' four pieces back to back, each
// starting at a multiple of 16 bytes so that kernels can load them with
// aligned vector loads.
//
//   [codesOffset, +codesBytes)         packed 4-bit codes, ceil(n/2) bytes,
//                                      element 2i in the high nibble of byte i
//   [absmaxOffset, +absmaxBytes)       one absmax per block: u8 dynamic-map
//                                      codes with double quantization, f32
//                                      without
//   [nestedAbsmaxOffset, +nestedBytes) f32 absmax per nested block (double
//                                      quantization only, else 0 bytes)
//   [offsetOffset, +4)                 f32 mean of the first-level absmax
//                                      (double quantization only)
//
// The 256-entry dynamic map and the 16 NF4 codes are not stored: they are
// bitsandbytes' fixed tables (Nf4.h), which importers check a checkpoint's
// quant_map and nested_quant_map against.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_FORMAT_NF4LAYOUT_H
#define QLORACC_RUNTIME_FORMAT_NF4LAYOUT_H

#include <cstdint>
#include <optional>

namespace qlora::format {

struct Nf4Layout {
  int64_t count = 0;           ///< elements of the original tensor
  int64_t blocksize = 0;       ///< elements per absmax
  int64_t nestedBlocksize = 0; ///< absmax per nested absmax; 0 = no DQ
  int64_t blocks = 0;
  int64_t nestedBlocks = 0;
  int64_t codesOffset = 0, codesBytes = 0;
  int64_t absmaxOffset = 0, absmaxBytes = 0;
  int64_t nestedAbsmaxOffset = 0, nestedAbsmaxBytes = 0;
  int64_t offsetOffset = 0, offsetBytes = 0;
  int64_t totalBytes = 0;

  bool isDoubleQuantized() const { return nestedBlocksize != 0; }

  /// The layout of `count` elements, or std::nullopt when count is negative,
  /// blocksize not positive or nestedBlocksize negative.
  static std::optional<Nf4Layout> compute(int64_t count, int64_t blocksize,
                                          int64_t nestedBlocksize) {
    if (count < 0 || blocksize <= 0 || nestedBlocksize < 0)
      return std::nullopt;
    auto alignUp = [](int64_t v) { return (v + 15) / 16 * 16; };
    Nf4Layout l;
    l.count = count;
    l.blocksize = blocksize;
    l.nestedBlocksize = nestedBlocksize;
    l.blocks = (count + blocksize - 1) / blocksize;
    l.codesBytes = (count + 1) / 2;
    l.absmaxOffset = alignUp(l.codesBytes);
    if (nestedBlocksize == 0) {
      l.absmaxBytes = 4 * l.blocks;
      l.nestedAbsmaxOffset = l.offsetOffset = l.totalBytes =
          alignUp(l.absmaxOffset + l.absmaxBytes);
      return l;
    }
    l.nestedBlocks = (l.blocks + nestedBlocksize - 1) / nestedBlocksize;
    l.absmaxBytes = l.blocks;
    l.nestedAbsmaxOffset = alignUp(l.absmaxOffset + l.absmaxBytes);
    l.nestedAbsmaxBytes = 4 * l.nestedBlocks;
    l.offsetOffset = alignUp(l.nestedAbsmaxOffset + l.nestedAbsmaxBytes);
    l.offsetBytes = 4;
    l.totalBytes = alignUp(l.offsetOffset + l.offsetBytes);
    return l;
  }
};

} // namespace qlora::format

#endif // QLORACC_RUNTIME_FORMAT_NF4LAYOUT_H
