//===- QloraDialect.td - The qlora training-graph dialect --*- tablegen -*-===//
#ifndef QLORA_DIALECT_TD
#define QLORA_DIALECT_TD

include "mlir/IR/OpBase.td"

def Qlora_Dialect : Dialect {
  let name = "qlora";
  let cppNamespace = "::mlir::qlora";
  let summary = "A LLaMA-family training graph with LoRA adapters";
  let description = [{
    The `qlora` dialect describes a decoder-only transformer and its loss with
    value semantics on ranked tensors. Parameters are operations:
    `qlora.weight` is a frozen tensor that refers to its bytes in a
    safetensors file (or holds them inline for small tests), and
    `qlora.lora_param` is a trainable LoRA matrix that carries its
    initialisation. The model operations (`embedding`, `rms_norm`, `linear`,
    `rope`, `attention`, `silu`, `mul`, `add`, `reshape`, `cast`,
    `cross_entropy`) follow transformers' `LlamaForCausalLM` and PEFT's
    `lora.Linear` numerically.

    Two discardable module attributes describe where the graph came from and
    are verified by the dialect:
    `qlora.model = #qlora.model_config<...>` (architecture and shapes, used by
    adapter export) and `qlora.lora = #qlora.lora_config<...>`.
  }];
  let useDefaultAttributePrinterParser = 1;
  let hasOperationAttrVerify = 1;
  // Quantized frozen weights are `!nf4.tensor`s.
  let dependentDialects = ["::mlir::nf4::Nf4Dialect"];
  let hasConstantMaterializer = 0;
  let extraClassDeclaration = [{
    /// Name of the module attribute holding a `ModelConfigAttr`.
    static constexpr ::llvm::StringLiteral kModelAttrName = "qlora.model";
    /// Name of the module attribute holding a `LoraConfigAttr`.
    static constexpr ::llvm::StringLiteral kLoraAttrName = "qlora.lora";
    /// On @train_step: micro-batches per optimizer step.
    static constexpr ::llvm::StringLiteral kGradAccumAttrName =
        "qlora.grad_accum";
    /// On @train_step: AdamW's betas, epsilon and the runtime defaults.
    /// On a forward op cloned by --qlora-remat to recompute a value for the
    /// backward pass (a unit attribute): its results are `recompute`
    /// buffers.
    static constexpr ::llvm::StringLiteral kRecomputeAttrName =
        "qlora.recompute";
    static constexpr ::llvm::StringLiteral kOptimizerAttrName =
        "qlora.optimizer";
    /// Argument/result attributes naming the step's inputs and outputs.
    static constexpr ::llvm::StringLiteral kInputAttrName = "qlora.input";
    static constexpr ::llvm::StringLiteral kOutputAttrName = "qlora.output";

  private:
    /// Defined next to the attribute storage classes (QloraAttrs.cpp).
    void registerAttributes();

  public:
  }];
}

class Qlora_Op<string mnemonic, list<Trait> traits = []>
    : Op<Qlora_Dialect, mnemonic, traits>;

#endif // QLORA_DIALECT_TD
