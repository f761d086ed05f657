//===- Nf4Dialect.td - The nf4 storage dialect -------------*- tablegen -*-===//
#ifndef NF4_DIALECT_TD
#define NF4_DIALECT_TD

include "mlir/IR/OpBase.td"

def Nf4_Dialect : Dialect {
  let name = "nf4";
  let cppNamespace = "::mlir::nf4";
  let summary = "4-bit NormalFloat weights stored exactly as bitsandbytes does";
  let description = [{
    The `nf4` dialect holds the frozen weights of a QLoRA model in the
    4-bit NormalFloat format of bitsandbytes' `quantize_4bit(quant_type =
    "nf4")`, byte for byte, so that a checkpoint written by transformers can
    be loaded without requantizing and our output can be compared with
    bitsandbytes' bit for bit.

    Layout of a tensor of `n` elements with block size `B` (64 for QLoRA):

    - The tensor is flattened row-major and cut into `ceil(n / B)` blocks;
      the last block may be partial.
    - Each element is replaced by the index (0..15) of the nearest value of
      the 16-entry NF4 code table after scaling its block by `1 / absmax`.
    - Two indices share a byte, the first element in the high nibble; an odd
      count is padded with a zero nibble. The codes are `ui8` of shape
      `[ceil(n / 2), 1]`, as bitsandbytes stores them.
    - Without double quantization, `absmax` is one `f32` per block.
    - With double quantization (`dq = 256`, bitsandbytes'
      `compress_statistics=True`) the scales are themselves quantized:
      `offset = mean(absmax)`, and `absmax - offset` is quantized blockwise
      with blocks of 256 to 8-bit codes of the signed dynamic map. `absmax`
      is then one `ui8` per block, `nested_absmax` one `f32` per 256 blocks,
      and `absmax[i] = dyn[code[i]] * nested_absmax[i / 256] + offset`.

    Storage per parameter with `block = 64, dq = 256` is
    `4 + 8/64 + 32/(64*256) ≈ 4.127` bits (4.5 bits without double
    quantization). The 16-entry code table and the 256-entry dynamic map are
    fixed and not stored per tensor.

    A tensor's layout is its type, `!nf4.tensor<4096x4096, block = 64,
    dq = 256>`; `nf4.constant` holds the bytes, `nf4.quantize` and
    `nf4.dequantize` convert from and to float tensors.
  }];
  let useDefaultTypePrinterParser = 1;
  let hasConstantMaterializer = 1;
  let extraClassDeclaration = [{
    /// Registers the types; defined next to their storage in Nf4Types.cpp.
    void registerTypes();
  }];
}

class Nf4_Op<string mnemonic, list<Trait> traits = []>
    : Op<Nf4_Dialect, mnemonic, traits>;

#endif // NF4_DIALECT_TD
