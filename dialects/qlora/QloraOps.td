//===- QloraOps.td - qlora operations ----------------------*- tablegen -*-===//
#ifndef QLORA_OPS_TD
#define QLORA_OPS_TD

include "dialects/qlora/QloraDialect.td"
include "dialects/qlora/QloraAttrs.td"
include "dialects/qlora/QloraInterfaces.td"
include "dialects/nf4/Nf4Types.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Qlora_FloatTensor : RankedTensorOf<[AnyFloat]>;
def Qlora_IndexTensor : RankedTensorOf<[AnySignlessInteger]>;

/// Every qlora op has a cost (QloraCost.cpp). Forward ops keep the default
/// step phase; backward and optimizer ops declare their own.
defvar Qlora_Cost = DeclareOpInterfaceMethods<Qlora_CostModelOpInterface>;
defvar Qlora_CostWithPhase =
    DeclareOpInterfaceMethods<Qlora_CostModelOpInterface, ["getStepPhase"]>;

//===----------------------------------------------------------------------===//
// Parameters
//===----------------------------------------------------------------------===//

def Qlora_WeightOp : Qlora_Op<"weight", [Pure, Qlora_Cost]> {
  let summary = "A frozen parameter of the base model";
  let description = [{
    A frozen tensor, named as in the checkpoint. Its bytes are either in a
    safetensors file (`source`), inline (`value`, for small tests and the
    `tiny` preset), or absent for shape-only graphs (`--no-weights`), which
    can be compiled and memory-planned but not run.

    A weight of type `!nf4.tensor` is already quantized: its `source` key
    names a bitsandbytes 4-bit tensor (`<key>`, `<key>.absmax`,
    `<key>.quant_map`, and with double quantization `<key>.nested_absmax`,
    `<key>.nested_quant_map`, plus `<key>.quant_state.bitsandbytes__nf4`),
    as transformers saves a model loaded in 4 bits. It has no inline
    `value`; `--nf4-quantize-frozen` turns it into an `nf4.constant` with
    the checkpoint's bytes unchanged.

    ```mlir
    %w = qlora.weight "model.layers.0.self_attn.q_proj.weight"
           source <"/m/model.safetensors", "model.layers.0.self_attn.q_proj.weight">
           : tensor<4096x4096xbf16>
    %q = qlora.weight "model.layers.0.self_attn.k_proj.weight"
           source <"/m/model.safetensors", "model.layers.0.self_attn.k_proj.weight">
           : !nf4.tensor<4096x4096, block = 64, dq = 256>
    ```
  }];
  let arguments = (ins StrAttr:$name,
                       OptionalAttr<Qlora_SourceAttr>:$source,
                       OptionalAttr<ElementsAttr>:$value);
  let results = (outs AnyTypeOf<[Qlora_FloatTensor, Nf4_TensorType]>:$result);
  let assemblyFormat = [{
    $name (`source` $source^)? (`value` $value^)? attr-dict `:`
    qualified(type($result))
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// True when the graph carries no bytes for this weight.
    bool isShapeOnly() { return !getSource() && !getValue(); }
    /// True for a weight that is already NF4 (`!nf4.tensor`).
    bool isQuantized() { return ::llvm::isa<::mlir::nf4::Nf4TensorType>(getType()); }
    /// The float tensor type of a weight that is not quantized.
    ::mlir::RankedTensorType getTensorType() {
      return ::llvm::cast<::mlir::RankedTensorType>(getType());
    }
  }];
}

def Qlora_LoraParamOp : Qlora_Op<"lora_param", [Pure, Qlora_Cost]> {
  let summary = "A trainable LoRA matrix (lora_A or lora_B)";
  let description = [{
    A trainable fp32 matrix with its initialisation: PEFT initialises
    `lora_A` with `kaiming_uniform(a=sqrt(5))`, i.e. `U(-1/sqrt(in),
    1/sqrt(in))`, and `lora_B` with zeros. The random values come from
    qloracc's counter-based generator keyed by `seed` and `name`, so they do
    not depend on the order in which parameters are created.

    ```mlir
    %a = qlora.lora_param "model.layers.0.self_attn.q_proj.lora_A.weight"
           init <kaiming_uniform> seed 0 : tensor<16x4096xf32>
    ```
  }];
  let arguments = (ins StrAttr:$name, Qlora_LoraInitAttr:$init,
                       I64Attr:$seed);
  let results = (outs Qlora_FloatTensor:$result);
  let assemblyFormat = [{
    $name `init` $init `seed` $seed attr-dict `:` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Model operations. Result types are inferred and therefore not printed.
//===----------------------------------------------------------------------===//

/// A model op whose result type is inferred: by our C++ (InferTypeOpAdaptor,
/// which also checks shapes) unless the op passes `InferTypeOpInterface` and
/// lets ODS derive it from a type constraint.
/// Every model op is differentiable (QloraVjp.cpp builds its VJP) and has a
/// forward cost.
class Qlora_GraphOp<string mnemonic, list<Trait> traits = [],
                    list<Trait> infer = [InferTypeOpAdaptor]>
    : Qlora_Op<mnemonic, !listconcat([Pure,
        DeclareOpInterfaceMethods<Qlora_DifferentiableOpInterface>,
        Qlora_Cost], infer, traits)>;

def Qlora_EmbeddingOp : Qlora_GraphOp<"embedding"> {
  let summary = "Token embedding lookup";
  let description = [{
    `result[..., :] = table[tokens[...], :]`. The result has the token
    tensor's shape plus the hidden dimension, in the table's element type.
  }];
  let arguments = (ins Qlora_FloatTensor:$table, Qlora_IndexTensor:$tokens);
  let results = (outs Qlora_FloatTensor:$result);
  let assemblyFormat = [{
    $table `,` $tokens attr-dict `:` type($table) `,` type($tokens)
  }];
}

def Qlora_CastOp : Qlora_GraphOp<"cast"> {
  let summary = "Element type conversion (round to nearest even)";
  let arguments = (ins Qlora_FloatTensor:$input, TypeAttrOf<AnyFloat>:$to);
  let results = (outs Qlora_FloatTensor:$result);
  let assemblyFormat = "$input `to` $to attr-dict `:` type($input)";
  let hasFolder = 1;
}

def Qlora_RmsNormOp : Qlora_GraphOp<"rms_norm"> {
  let summary = "RMSNorm over the last dimension, as LlamaRMSNorm";
  let description = [{
    `weight * cast(x * rsqrt(mean(x^2, -1) + eps))` with the statistics in
    fp32. `weight` has one element per feature of the last dimension.
  }];
  let arguments = (ins Qlora_FloatTensor:$input, Qlora_FloatTensor:$weight,
                       F64Attr:$eps);
  let results = (outs Qlora_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight attr-dict `:` type($input) `,` type($weight)
  }];
  let hasVerifier = 1;
}

def Qlora_LinearOp : Qlora_GraphOp<"linear", [AttrSizedOperandSegments]> {
  let summary = "x Wᵀ, with an optional LoRA path as PEFT's lora.Linear";
  let description = [{
    `y = x Wᵀ + (dropout(x) Aᵀ) Bᵀ · scaling` with `W: [out, in]`,
    `A: [r, in]`, `B: [out, r]`. Without `lora(...)` it is a plain
    bias-free linear. The result has the input's element type; the weight
    may be stored in another float type (bf16 checkpoints, dequantized NF4).

    `dropout(x) = x · mask / (1 − dropout)` (inverted dropout, LoRA path
    only). `dropout_stream` names the mask's random stream: unique per LoRA
    module and micro-batch, set by `--qlora-build-training-step` and
    required to lower a linear whose dropout is above 0.

    ```mlir
    %y = qlora.linear %x, %w lora(%a, %b) {dropout = 0.0, scaling = 2.0}
           : tensor<1x64x64xf32>, tensor<64x64xbf16>, tensor<16x64xf32>,
             tensor<64x16xf32>
    ```
  }];
  let arguments = (ins Qlora_FloatTensor:$input, Qlora_FloatTensor:$weight,
                       Optional<Qlora_FloatTensor>:$lora_a,
                       Optional<Qlora_FloatTensor>:$lora_b,
                       DefaultValuedAttr<F64Attr, "1.0">:$scaling,
                       DefaultValuedAttr<F64Attr, "0.0">:$dropout,
                       OptionalAttr<StrAttr>:$dropout_stream);
  let results = (outs Qlora_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`lora` `(` $lora_a^ `,` $lora_b `)`)? attr-dict `:`
    type($input) `,` type($weight) (`,` type($lora_a)^ `,` type($lora_b))?
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    bool hasLora() { return getLoraA() != nullptr; }
  }];
}

def Qlora_RopeOp : Qlora_GraphOp<"rope"> {
  let summary = "Rotary position embedding, as LLaMA's apply_rotary_pos_emb";
  let description = [{
    Rotates `input: [batch, seq, heads, head_dim]` at positions `0..seq-1`:
    `x * cos + rotate_half(x) * sin` with `inv_freq = 1/theta^(2i/d)` over
    `cat(freqs, freqs)`. `scaling` applies LLaMA-3's frequency adjustment.
  }];
  let arguments = (ins Qlora_FloatTensor:$input, F64Attr:$theta,
                       OptionalAttr<Qlora_RopeScalingAttr>:$scaling);
  let results = (outs Qlora_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
  let hasVerifier = 1;
}

def Qlora_AttentionOp : Qlora_GraphOp<"attention"> {
  let summary = "Causal grouped-query scaled dot-product attention";
  let description = [{
    `softmax(Q Kᵀ · scale + causal mask) V` per head, softmax in fp32.
    `query: [batch, seq, heads, head_dim]`; `key` and `value:
    [batch, seq, kv_heads, head_dim]`, where each KV head serves
    `heads / kv_heads` consecutive query heads. `scale` defaults to
    `1/sqrt(head_dim)`.
  }];
  let arguments = (ins Qlora_FloatTensor:$query, Qlora_FloatTensor:$key,
                       Qlora_FloatTensor:$value,
                       OptionalAttr<F64Attr>:$scale,
                       DefaultValuedAttr<BoolAttr, "true">:$causal);
  let results = (outs Qlora_FloatTensor:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value attr-dict `:`
    type($query) `,` type($key) `,` type($value)
  }];
  let extraClassDeclaration = [{
    /// The softmax scale: `scale` if set, else 1/sqrt(head_dim).
    double getEffectiveScale() {
      return getAttentionScale(getScale(), getQuery().getType());
    }
  }];
}

def Qlora_SiluOp : Qlora_GraphOp<"silu", [SameOperandsAndResultType],
                                 [InferTypeOpInterface]> {
  let summary = "x · sigmoid(x)";
  let arguments = (ins Qlora_FloatTensor:$input);
  let results = (outs Qlora_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

class Qlora_ElementwiseBinaryOp<string mnemonic, string expr>
    : Qlora_GraphOp<mnemonic, [SameOperandsAndResultType, Commutative],
                    [InferTypeOpInterface]> {
  let summary = "Elementwise " # expr # " of two tensors of one type";
  let arguments = (ins Qlora_FloatTensor:$lhs, Qlora_FloatTensor:$rhs);
  let results = (outs Qlora_FloatTensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($lhs)";
}

def Qlora_AddOp : Qlora_ElementwiseBinaryOp<"add", "lhs + rhs">;
def Qlora_MulOp : Qlora_ElementwiseBinaryOp<"mul", "lhs * rhs">;

def Qlora_ReshapeOp : Qlora_GraphOp<"reshape"> {
  let summary = "Row-major reshape to a static shape";
  let description = [{
    Views the input as `shape`; the element count must not change.

    ```mlir
    %q4 = qlora.reshape %q to [1, 64, 4, 16] : tensor<1x64x64xf32>
    ```
  }];
  let arguments = (ins Qlora_FloatTensor:$input, DenseI64ArrayAttr:$shape);
  let results = (outs Qlora_FloatTensor:$result);
  let assemblyFormat = "$input `to` $shape attr-dict `:` type($input)";
  let hasFolder = 1;
}

// The f32 result is a buildable type, so ODS writes inferReturnTypes itself.
def Qlora_CrossEntropyOp : Qlora_GraphOp<"cross_entropy", [],
    [DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "Causal-LM loss: shifted labels, mean over non-ignored ones";
  let description = [{
    With `logits: [batch, seq, vocab]` and `labels: [batch, seq]`, compares
    `logits[:, :-1]` with `labels[:, 1:]` in fp32 and averages the negative
    log-likelihood over the labels that are not `ignore_index`, as
    transformers' `ForCausalLMLoss` does. With `normalizer` (a
    `qlora.count_targets` over the whole accumulated batch) it divides the
    sum by it instead, as transformers does with `num_items_in_batch`.
  }];
  let arguments = (ins Qlora_FloatTensor:$logits, Qlora_IndexTensor:$labels,
                       Optional<F32>:$normalizer,
                       DefaultValuedAttr<I64Attr, "-100">:$ignore_index);
  let results = (outs F32:$result);
  let assemblyFormat = [{
    $logits `,` $labels (`normalizer` $normalizer^)? attr-dict `:`
    type($logits) `,` type($labels)
  }];
  let hasVerifier = 1;
}

include "dialects/qlora/QloraTrainingOps.td"

#endif // QLORA_OPS_TD
