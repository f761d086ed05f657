//===- QloraTrainingOps.td - qlora backward and optimizer ops -*- tablegen -*-===//
//
// The ops `--qlora-build-training-step` creates: one vector-Jacobian product
// per forward op that needs a kernel of its own, the loss normaliser for
// gradient accumulation, and AdamW with global-norm clipping. Included by
// QloraOps.td.
//
//===----------------------------------------------------------------------===//
#ifndef QLORA_TRAINING_OPS_TD
#define QLORA_TRAINING_OPS_TD

//===----------------------------------------------------------------------===//
// Vector-Jacobian products
//===----------------------------------------------------------------------===//

/// A backward op whose gradient results have the types of the forward
/// values they are gradients of: ODS derives inferReturnTypes from the
/// AllTypesMatch traits. Its cost belongs to the backward pass.
class Qlora_GradOp<string mnemonic, list<Trait> traits = []>
    : Qlora_Op<mnemonic, !listconcat([Pure, Qlora_CostWithPhase], traits,
        [DeclareOpInterfaceMethods<InferTypeOpInterface>])>;

def Qlora_RmsNormGradOp : Qlora_GradOp<"rms_norm_grad",
    [AllTypesMatch<["grad_output", "input", "result"]>]> {
  let summary = "Input gradient of rms_norm (the weight is frozen)";
  let description = [{
    `d input` of `rms_norm(input, weight)` given `d result`; the statistics
    are recomputed from `input`.
  }];
  let arguments = (ins Qlora_FloatTensor:$grad_output,
                       Qlora_FloatTensor:$input, Qlora_FloatTensor:$weight,
                       F64Attr:$eps);
  let results = (outs Qlora_FloatTensor:$result);
  let assemblyFormat = [{
    $grad_output `,` $input `,` $weight attr-dict `:` type($input) `,`
    type($weight)
  }];
}

def Qlora_RopeGradOp : Qlora_GradOp<"rope_grad",
    [AllTypesMatch<["grad_output", "result"]>]> {
  let summary = "Input gradient of rope: the transposed rotation";
  let arguments = (ins Qlora_FloatTensor:$grad_output, F64Attr:$theta,
                       OptionalAttr<Qlora_RopeScalingAttr>:$scaling);
  let results = (outs Qlora_FloatTensor:$result);
  let assemblyFormat = "$grad_output attr-dict `:` type($grad_output)";
}

def Qlora_AttentionGradOp : Qlora_GradOp<"attention_grad", [
    AllTypesMatch<["grad_output", "query", "output", "grad_query"]>,
    AllTypesMatch<["key", "grad_key"]>,
    AllTypesMatch<["value", "grad_value"]>]> {
  let summary = "Gradients of attention with respect to query, key and value";
  let description = [{
    Given `d output` and the forward's operands and result, recomputes the
    softmax and returns `d query`, `d key`, `d value`; key and value
    gradients sum over the query heads that share each KV head.
  }];
  let arguments = (ins Qlora_FloatTensor:$grad_output,
                       Qlora_FloatTensor:$query, Qlora_FloatTensor:$key,
                       Qlora_FloatTensor:$value, Qlora_FloatTensor:$output,
                       OptionalAttr<F64Attr>:$scale,
                       DefaultValuedAttr<BoolAttr, "true">:$causal);
  let results = (outs Qlora_FloatTensor:$grad_query,
                      Qlora_FloatTensor:$grad_key,
                      Qlora_FloatTensor:$grad_value);
  let assemblyFormat = [{
    $grad_output `,` $query `,` $key `,` $value `,` $output attr-dict `:`
    type($query) `,` type($key) `,` type($value)
  }];
  let extraClassDeclaration = [{
    /// The softmax scale: `scale` if set, else 1/sqrt(head_dim).
    double getEffectiveScale() {
      return getAttentionScale(getScale(), getQuery().getType());
    }
  }];
}

def Qlora_SiluGradOp : Qlora_GradOp<"silu_grad",
    [AllTypesMatch<["grad_output", "input", "result"]>]> {
  let summary = "d input of silu: dy · s · (1 + x · (1 − s)), s = sigmoid(x)";
  let arguments = (ins Qlora_FloatTensor:$grad_output,
                       Qlora_FloatTensor:$input);
  let results = (outs Qlora_FloatTensor:$result);
  let assemblyFormat = "$grad_output `,` $input attr-dict `:` type($input)";
}

def Qlora_LinearGradInputOp : Qlora_Op<"linear_grad_input",
    [Pure, AttrSizedOperandSegments, Qlora_CostWithPhase]> {
  let summary = "d x of linear: dy·W + s·mask ⊙ ((dy·B)·A)";
  let description = [{
    The input gradient of `qlora.linear %x, %w lora(%a, %b)` given `d y`.
    The result has `d y`'s leading dimensions and `in` features. With
    `dropout` above 0 the LoRA term is multiplied by the forward's dropout
    mask (`keep / (1 − dropout)`), recomputed from `dropout_stream`.
  }];
  let arguments = (ins Qlora_FloatTensor:$grad_output,
                       Qlora_FloatTensor:$weight,
                       Optional<Qlora_FloatTensor>:$lora_a,
                       Optional<Qlora_FloatTensor>:$lora_b,
                       DefaultValuedAttr<F64Attr, "1.0">:$scaling,
                       DefaultValuedAttr<F64Attr, "0.0">:$dropout,
                       OptionalAttr<StrAttr>:$dropout_stream);
  let results = (outs Qlora_FloatTensor:$result);
  let assemblyFormat = [{
    $grad_output `,` $weight (`lora` `(` $lora_a^ `,` $lora_b `)`)? attr-dict
    `:` type($grad_output) `,` type($weight)
    (`,` type($lora_a)^ `,` type($lora_b))? `->` type($result)
  }];
  let hasVerifier = 1;
}

def Qlora_LoraGradOp : Qlora_GradOp<"lora_grad", [
    AllTypesMatch<["lora_a", "grad_a"]>, AllTypesMatch<["lora_b", "grad_b"]>]> {
  let summary = "Gradients of the LoRA matrices of a linear";
  let description = [{
    For `y = x Wᵀ + (dropout(x) Aᵀ) Bᵀ · s` and `d y`:
    `d A = s · (dy · B)ᵀ · dropout(x)` and
    `d B = s · dyᵀ · (dropout(x) · Aᵀ)`, summed over every leading
    dimension (tokens). `dropout` and `dropout_stream` are the forward
    linear's: the same mask is recomputed, never stored.
  }];
  let arguments = (ins Qlora_FloatTensor:$grad_output,
                       Qlora_FloatTensor:$input, Qlora_FloatTensor:$lora_a,
                       Qlora_FloatTensor:$lora_b,
                       DefaultValuedAttr<F64Attr, "1.0">:$scaling,
                       DefaultValuedAttr<F64Attr, "0.0">:$dropout,
                       OptionalAttr<StrAttr>:$dropout_stream);
  let results = (outs Qlora_FloatTensor:$grad_a, Qlora_FloatTensor:$grad_b);
  let assemblyFormat = [{
    $grad_output `,` $input `,` $lora_a `,` $lora_b attr-dict `:`
    type($grad_output) `,` type($input) `,` type($lora_a) `,` type($lora_b)
  }];
  let hasVerifier = 1;
}

def Qlora_CrossEntropyGradOp : Qlora_GradOp<"cross_entropy_grad",
    [AllTypesMatch<["logits", "result"]>]> {
  let summary = "d logits of cross_entropy";
  let description = [{
    `d loss · (softmax(logits) − onehot(label)) / n` on the positions that
    have a shifted target (n = their count, or `normalizer` when given);
    zero elsewhere.
  }];
  let arguments = (ins Qlora_FloatTensor:$logits, Qlora_IndexTensor:$labels,
                       F32:$grad_loss, Optional<F32>:$normalizer,
                       DefaultValuedAttr<I64Attr, "-100">:$ignore_index);
  let results = (outs Qlora_FloatTensor:$result);
  let assemblyFormat = [{
    $logits `,` $labels `,` $grad_loss (`normalizer` $normalizer^)? attr-dict
    `:` type($logits) `,` type($labels)
  }];
  let hasVerifier = 1;
}

def Qlora_CountTargetsOp : Qlora_Op<"count_targets", [Pure, Qlora_Cost]> {
  let summary = "Number of shifted labels that are not ignore_index, as f32";
  let description = [{
    The denominator transformers uses for a batch (`num_items_in_batch`):
    gradient accumulation divides every micro-batch's summed loss by the
    count over the whole batch, so that accumulating N micro-batches equals
    one step on their union.
  }];
  let arguments = (ins Qlora_IndexTensor:$labels,
                       DefaultValuedAttr<I64Attr, "-100">:$ignore_index);
  let results = (outs F32:$result);
  let assemblyFormat = "$labels attr-dict `:` type($labels)";
}

//===----------------------------------------------------------------------===//
// Optimizer
//===----------------------------------------------------------------------===//

def Qlora_GlobalNormOp : Qlora_Op<"global_norm", [Pure, Qlora_CostWithPhase]> {
  let summary = "L2 norm over all given gradients, as clip_grad_norm_";
  let arguments = (ins Variadic<Qlora_FloatTensor>:$grads);
  let results = (outs F32:$result);
  let assemblyFormat = "$grads attr-dict `:` type($grads)";
}

def Qlora_ClipCoefficientOp : Qlora_Op<"clip_coefficient",
    [Pure, Qlora_CostWithPhase]> {
  let summary = "min(1, max_norm / (norm + 1e-6)); 1 when max_norm <= 0";
  let arguments = (ins F32:$norm, F32:$max_norm);
  let results = (outs F32:$result);
  let assemblyFormat = "$norm `,` $max_norm attr-dict";
}

def Qlora_AdamWOp : Qlora_Op<"adamw", [MemoryEffects<[MemRead, MemWrite]>,
    AllTypesMatch<["param", "grad"]>, Qlora_CostWithPhase]> {
  let summary = "One torch.optim.AdamW update of a LoRA parameter, in place";
  let description = [{
    Updates the parameter that `param` reads (a `qlora.lora_param`) and its
    two moment estimates, which this op owns, exactly as
    `torch.optim.AdamW` (foreach off) does with gradient
    `grad · grad_scale`: decoupled weight decay, `lerp` for the first
    moment, bias corrections in double for the 1-based `step`.
    `lr`, `step` and `weight_decay` are runtime values; the betas and
    epsilon are fixed when the program is built.

    ```mlir
    qlora.adamw %a, %ga scale %c lr %lr step %step weight_decay %wd
      {beta1 = 0.9, beta2 = 0.999, epsilon = 1.0e-08} : tensor<4x64xf32>
    ```
  }];
  let arguments = (ins Qlora_FloatTensor:$param, Qlora_FloatTensor:$grad,
                       F32:$grad_scale, F32:$lr, I64:$step,
                       F32:$weight_decay,
                       DefaultValuedAttr<F64Attr, "0.9">:$beta1,
                       DefaultValuedAttr<F64Attr, "0.999">:$beta2,
                       DefaultValuedAttr<F64Attr, "1.0e-08">:$epsilon);
  let assemblyFormat = [{
    $param `,` $grad `scale` $grad_scale `lr` $lr `step` $step `weight_decay`
    $weight_decay attr-dict `:` type($param)
  }];
  let hasVerifier = 1;
}

#endif // QLORA_TRAINING_OPS_TD
