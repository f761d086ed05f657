//===- Nf4Ops.td - nf4 operations --------------------------*- tablegen -*-===//
#ifndef NF4_OPS_TD
#define NF4_OPS_TD

include "dialects/nf4/Nf4Dialect.td"
include "dialects/nf4/Nf4Types.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

/// The float types bitsandbytes quantizes from and dequantizes to.
def Nf4_FloatTensor : RankedTensorOf<[BF16, F16, F32]>;

def Nf4_ConstantOp : Nf4_Op<"constant", [ConstantLike, Pure]> {
  let summary = "An NF4 tensor's bytes: packed codes, scales, nested scales";
  let description = [{
    The storage of an NF4 tensor in bitsandbytes' layout (see the dialect
    description), with `n` elements, `b` blocks and `nb` nested blocks as
    the result type defines them:

    | attribute       | element type               | shape              |
    |-----------------|----------------------------|--------------------|
    | `codes`         | `ui8` (or `i8`)            | `[ceil(n / 2), 1]` |
    | `absmax`        | `f32`; `ui8` (or `i8`) with `dq` | `[b]`        |
    | `nested_absmax` | `f32`, only with `dq`      | `[nb]`             |
    | `offset`        | `f32`, only with `dq`      | scalar             |

    Any `ElementsAttr` holds the bytes: `dense_resource` for real weights,
    `dense` for small tests. The serializer copies them into `train.bin`
    sections unchanged.

    ```mlir
    // 8x16 = 128 elements: 64 code bytes, 2 blocks of 64, 1 nested block.
    %q = nf4.constant codes(dense<119> : tensor<64x1xui8>)
                      absmax(dense<[0, 255]> : tensor<2xui8>)
                      nested_absmax(dense<0.5> : tensor<1xf32>)
                      offset(1.0)
                      : !nf4.tensor<8x16, block = 64, dq = 256>
    ```

    `name` is the frozen weight it holds, when it holds one
    (`--nf4-quantize-frozen` sets it): the runtime buffer and the reports are
    named after it.

    Its folded value is a dictionary with the four attributes above, from
    which the dialect rebuilds the op.
  }];
  let arguments = (ins ElementsAttr:$codes, ElementsAttr:$absmax,
                       OptionalAttr<ElementsAttr>:$nested_absmax,
                       OptionalAttr<F32Attr>:$offset,
                       OptionalAttr<StrAttr>:$name);
  let results = (outs Nf4_TensorType:$result);
  let assemblyFormat = [{
    `codes` `(` $codes `)` `absmax` `(` $absmax `)`
    (`nested_absmax` `(` $nested_absmax^ `)`)?
    (`offset` `(` $offset^ `)`)? (`name` $name^)? attr-dict `:`
    qualified(type($result))
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
  let extraClassDeclaration = [{
    /// The folded value: {codes, absmax[, nested_absmax, offset]}.
    ::mlir::DictionaryAttr getValueDictionary();
    /// True if `value` could be the folded value of an nf4.constant.
    static bool isValueDictionary(::mlir::Attribute value);
    /// Builds an nf4.constant from a getValueDictionary() result.
    static ConstantOp createFromValueDictionary(::mlir::OpBuilder &builder,
                                                ::mlir::Location loc,
                                                ::mlir::DictionaryAttr value,
                                                Nf4TensorType type);
  }];
}

def Nf4_QuantizeOp : Nf4_Op<"quantize", [Pure]> {
  let summary = "Quantize a float tensor to NF4 as bitsandbytes' quantize_4bit";
  let description = [{
    Blockwise NF4 quantization of `input` with the block sizes of the result
    type, as `bitsandbytes.functional.quantize_4bit(input, blocksize=block,
    compress_statistics=(dq != 0), quant_type="nf4")` computes it (bf16
    inputs are widened to fp32 first). The shapes must be equal.
    `--nf4-quantize-frozen` replaces it with an `nf4.constant` when the
    input is known.

    ```mlir
    %q = nf4.quantize %w : tensor<64x64xbf16>
           -> !nf4.tensor<64x64, block = 64, dq = 256>
    ```
  }];
  let arguments = (ins Nf4_FloatTensor:$input);
  let results = (outs Nf4_TensorType:$result);
  let assemblyFormat = [{
    $input attr-dict `:` type($input) `->` qualified(type($result))
  }];
  let hasVerifier = 1;
}

def Nf4_DequantizeOp : Nf4_Op<"dequantize", [Pure]> {
  let summary = "Dequantize an NF4 tensor to a float tensor of the same shape";
  let description = [{
    `w = code[idx] * absmax[block]` in fp32, with `absmax` first recovered
    from its 8-bit codes when the type is double quantized, then rounded to
    the result's element type (round to nearest even).

    `nf4.dequantize(nf4.quantize(x))` is not `x`: quantization is lossy, so
    that pair is deliberately never folded.

    ```mlir
    %w = nf4.dequantize %q : !nf4.tensor<64x64, block = 64, dq = 256>
           -> tensor<64x64xbf16>
    ```
  }];
  let arguments = (ins Nf4_TensorType:$input);
  let results = (outs Nf4_FloatTensor:$result);
  let assemblyFormat = [{
    $input attr-dict `:` qualified(type($input)) `->` qualified(type($result))
  }];
  let hasVerifier = 1;
}

#endif // NF4_OPS_TD
