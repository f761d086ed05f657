//===- Nf4Types.td - nf4 types -----------------------------*- tablegen -*-===//
#ifndef NF4_TYPES_TD
#define NF4_TYPES_TD

include "dialects/nf4/Nf4Dialect.td"
include "mlir/IR/AttrTypeBase.td"

def Nf4_TensorType : TypeDef<Nf4_Dialect, "Nf4Tensor"> {
  let mnemonic = "tensor";
  let summary = "A static-shape tensor stored as blockwise NF4 codes";
  let description = [{
    The shape of the original float tensor and the layout of its storage:
    `block` elements share one absmax scale (32, 64, ..., 4096, the block
    sizes bitsandbytes accepts) and `dq` is the block size of the second
    quantization of those scales (256, as bitsandbytes' nested blocksize) or
    absent for plain fp32 scales.

    ```mlir
    !nf4.tensor<4096x4096, block = 64, dq = 256>   // QLoRA's default
    !nf4.tensor<11008x4096, block = 64>            // no double quantization
    ```

    `dq = 0` is accepted on input and means the same as no `dq`.
  }];
  let parameters = (ins ArrayRefParameter<"int64_t", "static shape">:$shape,
                        "int64_t":$blockSize,
                        "int64_t":$dqBlockSize);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// The only nested block size bitsandbytes uses for double quantization.
    static constexpr int64_t kNestedBlockSize = 256;
    /// Smallest and largest block size bitsandbytes accepts (powers of two).
    static constexpr int64_t kMinBlockSize = 32;
    static constexpr int64_t kMaxBlockSize = 4096;

    /// Number of elements of the original tensor.
    int64_t getNumElements() const;
    /// Number of absmax scales: ceil(numElements / blockSize).
    int64_t getNumBlocks() const;
    /// Bytes of packed codes, two per byte: ceil(numElements / 2).
    int64_t getNumPackedBytes() const;
    /// Number of nested fp32 scales: ceil(numBlocks / dqBlockSize), or 0
    /// without double quantization.
    int64_t getNumNestedBlocks() const;
    bool isDoubleQuantized() const { return getDqBlockSize() != 0; }
    /// Bits of storage for this tensor: codes, absmax (8-bit codes or fp32),
    /// and with double quantization the nested fp32 scales and the fp32
    /// offset. The shared code tables are not counted.
    int64_t getStorageBits() const;
    /// Bytes of the single runtime buffer holding this tensor
    /// (runtime/format/Nf4Layout.h: the pieces 16-byte aligned).
    int64_t getStorageBytes() const;
    /// getStorageBits() / getNumElements(): about 4.127 for block 64 with
    /// dq 256, 4.5 for block 64 without.
    double getBitsPerParameter() const;
  }];
}

#endif // NF4_TYPES_TD
