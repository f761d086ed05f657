//===- Passes.td - qloracc passes --------------------------*- tablegen -*-===//
//
// Every transformation of the pipeline (DESIGN.md), one record each. A pass
// is one .cpp in this folder named like its record, plus one lit test in
// test/passes/ named like its flag. Flags are prefixed by the dialect they
// work on: qlora-, nf4-, qrt-.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_PASSES_TD
#define QLORACC_PASSES_TD

include "mlir/Pass/PassBase.td"

def QloraGraphSummaryPass : Pass<"qlora-graph-summary", "::mlir::ModuleOp"> {
  let summary = "Print parameter counts, parameter memory by class and op counts";
  let description = [{
    Prints, to standard output, what the graph holds before any memory
    planning: frozen weights by storage type, LoRA parameters, the fp32
    gradients and AdamW moments they imply, the values the forward pass
    produces (what backpropagation would keep without rematerialization),
    and how many ops of each kind the graph has. `qloracc` prints it after
    running the pipeline; the IR is left unchanged.

    ```
    $ qlora-opt model.mlir --qlora-graph-summary -o /dev/null
    ```
  }];
  let dependentDialects = ["::mlir::qlora::QloraDialect"];
}

def QloraBuildTrainingStepPass
    : Pass<"qlora-build-training-step", "::mlir::ModuleOp"> {
  let summary = "Replace @loss by @train_step: forward, LoRA gradients and "
                "AdamW";
  let description = [{
    Turns the importer's `func.func @loss(%tokens, %labels) -> f32` into the
    function the runtime calls once per optimizer step:

    ```mlir
    func.func @train_step(%tokens: tensor<(A*B)xSxi32> {qlora.input = "tokens"},
                          %labels: tensor<(A*B)xSxi32> {qlora.input = "labels"},
                          %lr: f32 {qlora.input = "lr"},
                          %step: i64 {qlora.input = "step"},
                          %weight_decay: f32 {qlora.input = "weight_decay"},
                          %max_grad_norm: f32 {qlora.input = "max_grad_norm"})
        -> (f32 {qlora.output = "loss"}, f32 {qlora.output = "grad_norm"})
        attributes {qlora.grad_accum = A : i64, qlora.optimizer = {...}}
    ```

    where `A` is `grad-accum` and `B x S` the batch of `@loss`. The body
    holds, in program order (the memory planner relies on it):

    1. every `qlora.weight` and `qlora.lora_param`, once;
    2. for each of the `A` micro-batches, rows `[i*B, (i+1)*B)` of tokens and
       labels (`tensor.extract_slice`, only when `A > 1`), the forward graph
       of `@loss` on them, and right after it that micro-batch's backward
       pass, so its activations die before the next forward starts;
    3. the LoRA gradients summed over micro-batches, `qlora.global_norm` over
       them, `qlora.clip_coefficient` against the `max_grad_norm` input, and
       one `qlora.adamw` per LoRA parameter, in the order of the parameters.

    The backward pass is reverse-mode autodiff over
    `DifferentiableOpInterface`: only values that depend on a LoRA parameter
    and that the loss depends on get a gradient, so the frozen part of the
    model (the embedding, everything below the first LoRA layer) has no
    backward ops. An op on such a path without a gradient rule is an error.

    With `A > 1` every `qlora.cross_entropy` divides by
    `qlora.count_targets` of the whole step's labels, as transformers does
    with `num_items_in_batch`: the step's loss is the sum of the
    micro-batch losses and equals the loss of one batch of `A*B` rows, and
    so do its gradients. With `A = 1` the loss is the plain mean.

    A LoRA parameter that does not reach the loss gets a warning and no
    update (torch's AdamW skips a parameter whose `.grad` is None).

    ```
    $ qlora-opt model.mlir --qlora-build-training-step="grad-accum=4"
    ```
  }];
  let options = [
    Option<"gradAccum", "grad-accum", "int64_t", /*default=*/"1",
           "Micro-batches per optimizer step (gradient accumulation); the "
           "step's token tensors have grad-accum times @loss's rows">,
    Option<"beta1", "beta1", "double", /*default=*/"0.9",
           "AdamW's first-moment decay, in [0, 1)">,
    Option<"beta2", "beta2", "double", /*default=*/"0.999",
           "AdamW's second-moment decay, in [0, 1)">,
    Option<"epsilon", "epsilon", "double", /*default=*/"1.0e-8",
           "AdamW's denominator term, > 0">,
    Option<"weightDecay", "weight-decay", "double", /*default=*/"0.0",
           "Decoupled weight decay, >= 0: recorded in qlora.optimizer as the "
           "runtime's default for the weight_decay input">,
    Option<"maxGradNorm", "max-grad-norm", "double", /*default=*/"1.0",
           "Global gradient-norm clipping threshold, >= 0 (0 disables): "
           "recorded in qlora.optimizer as the runtime's default for the "
           "max_grad_norm input">,
  ];
  let dependentDialects = [
    "::mlir::qlora::QloraDialect", "::mlir::arith::ArithDialect",
    "::mlir::func::FuncDialect", "::mlir::tensor::TensorDialect"
  ];
}

def Nf4QuantizeFrozenPass : Pass<"nf4-quantize-frozen", "::mlir::ModuleOp"> {
  let summary = "Quantize every frozen linear weight to NF4 at compile time";
  let description = [{
    QLoRA's storage of the base model: every frozen weight that only feeds
    the `weight` operand of `qlora.linear` / `qlora.linear_grad_input` is
    replaced by an `nf4.constant` holding bitsandbytes'
    `quantize_4bit(w, blocksize=block-size, quant_type="nf4",
    compress_statistics=double-quant)` bytes, bit for bit, and an
    `nf4.dequantize` back to the weight's type that feeds the same uses:

    ```mlir
    %w = qlora.weight "model.layers.0.mlp.up_proj.weight"
           source <"/m/model.safetensors", "model.layers.0.mlp.up_proj.weight">
           : tensor<11008x4096xbf16>
    // becomes
    %q = nf4.constant codes(dense_resource<...> : tensor<22544384x1xui8>)
           absmax(dense_resource<...> : tensor<704512xui8>)
           nested_absmax(dense_resource<...> : tensor<2752xf32>)
           offset(0.0213...) name "model.layers.0.mlp.up_proj.weight"
           : !nf4.tensor<11008x4096, block = 64, dq = 256>
    %w = nf4.dequantize %q : !nf4.tensor<11008x4096, block = 64, dq = 256>
           -> tensor<11008x4096xbf16>
    ```

    The bytes are read from the mapped safetensors file (or the inline
    value) and quantized on all cores; the constants keep them in memory
    until `train.bin` stores them as sections. Embeddings, norms and the LM
    head (the linear whose result is the loss's logits) keep their dtype
    unless `quantize-lm-head` is set.

    A weight that is already NF4 (`qlora.weight : !nf4.tensor`, imported
    from a bitsandbytes 4-bit checkpoint) becomes an `nf4.constant` whose
    bytes are the checkpoint's, unchanged, whatever the options say; a
    shape-only weight (`--no-weights`) becomes a shape-only
    `qlora.weight : !nf4.tensor` so that memory planning sees NF4 sizes.

    With `report`, prints per tensor the RMSE and largest absolute error of
    the dequantized weight, the bytes before and after and the bits per
    parameter (bitsandbytes' layout: about 4.127 with double quantization),
    then the totals.

    Errors: a block size bitsandbytes does not accept, a nested block size
    other than 256, a NaN or infinity in a weight (naming the tensor and
    the element), a checkpoint tensor whose dtype or shape is not the
    weight's, and a broken bitsandbytes tensor.

    ```
    $ qlora-opt model.mlir --nf4-quantize-frozen="block-size=64 double-quant=true"
    ```
  }];
  let options = [
    Option<"blockSize", "block-size", "int64_t", /*default=*/"64",
           "Elements per absmax (a power of two in [32, 4096])">,
    Option<"doubleQuant", "double-quant", "bool", /*default=*/"true",
           "Quantize the absmax to 8 bits in nested blocks "
           "(compress_statistics)">,
    Option<"dqBlockSize", "dq-block-size", "int64_t", /*default=*/"256",
           "Absmax values per nested block (bitsandbytes: 256)">,
    Option<"quantizeLmHead", "quantize-lm-head", "bool", /*default=*/"false",
           "Quantize the LM head too">,
    Option<"report", "report", "bool", /*default=*/"false",
           "Print the quantization error and sizes of every tensor">,
    Option<"threads", "threads", "unsigned", /*default=*/"0",
           "Threads that quantize (0: all cores)">,
  ];
  let dependentDialects = [
    "::mlir::qlora::QloraDialect", "::mlir::nf4::Nf4Dialect"
  ];
}

def QloraRematPass : Pass<"qlora-remat", "::mlir::ModuleOp"> {
  let summary = "Recompute saved activations in the backward pass instead of "
                "keeping them";
  let description = [{
    Chooses which forward values of `@train_step` the backward pass reads
    from memory and which it recomputes, per decoder layer and micro-batch
    (a *segment*: the ops reading `model.layers.<N>.` parameters and what
    follows them up to the next layer). The values that cross from one
    segment to the next (the residual stream at layer inputs) are always
    kept. A recomputed op is cloned, with the unit attribute
    `qlora.recompute`, right before the first backward op that reads it;
    the originals then die with the forward pass. Recomputation is
    deterministic (LoRA dropout masks are keyed by step and position), so
    every policy gives bit-identical losses and gradients.

    - `none`: keep everything.
    - `per-layer`: keep only each layer's input and recompute the layer,
      which is what Hugging Face's gradient checkpointing does.
    - `selective`: recompute only what is cheap next to the GEMMs and
      attention: RMSNorms, SiLU, elementwise products and sums, RoPE and
      reshapes (in the spirit of Megatron-LM's selective recomputation; our
      attention kernels already recompute the softmax instead of storing
      it).
    - `budget`: the least recompute (FLOPs, from `CostModelOpInterface`)
      whose planned peak fits `budget` bytes. The step is a chain of
      identical layers, so a choice is characterised by how many segments
      are recomputed fully and how many selectively (the earliest segments,
      whose activations live longest, recompute most). The pass measures
      the planned peak of `none`, all-`selective` and all-`per-layer` with
      the real lowering and planner (`--qlora-lower-to-qrt`,
      `--qrt-plan-memory`, on a copy), interpolates the peak of every
      (full, selective) count pair from them, and checks the cheapest
      predicted fits with the planner until one really fits: an exhaustive
      search over the chain's configurations instead of Checkmate's ILP,
      exact up to the interpolation that the planner then verifies. A
      budget below the `per-layer` peak is an error.

    With `report`, prints the policy, the segments by policy, the recompute
    FLOPs per step and, for `budget`, the planned peaks it measured.

    ```
    $ qlora-opt step.mlir --qlora-remat="policy=budget budget=25769803776"
    ```
  }];
  let options = [
    Option<"policy", "policy", "std::string", /*default=*/"\"per-layer\"",
           "none, per-layer, selective or budget">,
    Option<"budget", "budget", "int64_t", /*default=*/"0",
           "With policy=budget: the planned peak to fit, in bytes">,
    Option<"activationType", "activation-type", "std::string",
           /*default=*/"\"f32\"",
           "With policy=budget: the activation type the step will be "
           "lowered with (as --qlora-lower-to-qrt's)">,
    Option<"nf4Gemm", "nf4-gemm", "::mlir::qlora::Nf4Gemm",
           /*default=*/"::mlir::qlora::Nf4Gemm::fused",
           "With policy=budget: how the step will be lowered to read NF4 "
           "weights (as --qlora-lower-to-qrt's; dequantize adds workspaces)",
           [{::llvm::cl::values(
             clEnumValN(::mlir::qlora::Nf4Gemm::fused, "fused", "fused"),
             clEnumValN(::mlir::qlora::Nf4Gemm::dequantize, "dequantize",
                        "dequantize"))}]>,
    Option<"report", "report", "bool", /*default=*/"false",
           "Print what was recomputed and what it costs">,
  ];
  let dependentDialects = [
    "::mlir::qlora::QloraDialect", "::mlir::qrt::QrtDialect"
  ];
}

def QloraLowerToQrtPass : Pass<"qlora-lower-to-qrt", "::mlir::ModuleOp"> {
  let summary = "Bufferize @train_step and select a kernel for every op";
  let description = [{
    Turns the training step from value semantics (`qlora` ops on tensors)
    into what the runtime executes: `qrt.buffer`s, `qrt.kernel`
    instantiations of the templates that `runtime/format/KernelAbi.h` names,
    and `qrt.launch`es and `qrt.copy`s in program order. One conversion
    pattern per op, applied with the dialect conversion driver; a pattern
    allocates its results' buffers and its workspaces, finds or creates its
    `qrt.kernel` and emits the launch with the arguments in the ABI's order.

    Every function with a body is lowered (after
    `--qlora-build-training-step` that is `@train_step`). The result:

    - `qrt.kernel @<template>_<n>` at module level, one per distinct
      (template, params) pair; params are i64 integers, f64 floats, strings
      (`w_dtype`, `from`, `to`: "F32", "BF16", "F16"; `rope_type`; `op`) and
      `array<i64: ...>` (`global_norm`'s `sizes`).
    - `func.func @train_step()` without arguments or results (it keeps its
      attributes: `qlora.grad_accum`, `qlora.optimizer`): first every
      `qrt.buffer`, then the launches and copies, then `return`. Launches
      use `grid [1, 1, 1] block [1, 1, 1]` until `--qrt-codegen-cuda` sets
      them.
    - Buffers (alignment 64, placement `device`, `size` the bytes of
      `type`): `weight` (frozen weights in their own dtype, `init` their
      `#qlora.source` or inline elements), `lora` (`init`
      `#qlora.init<...>` and `seed`), `optimizer` (`<param>.exp_avg` and
      `<param>.exp_avg_sq`, `init` `#qlora.init<zeros>`), `io` (named by
      `qlora.input`/`qlora.output`: tokens, labels, lr, step, weight_decay,
      max_grad_norm, loss, grad_norm; constants such as the autodiff seed
      are `io` buffers `constant_<n>` whose `init` is their value),
      `activation` (forward values), `gradient` (backward values: results
      of VJP ops and of anything computed from a gradient; the one each
      AdamW update reads is named `<param>.grad`) and `workspace` (kernel
      scratch: LoRA's `t_ws` = x·Aᵀ and `dt_ws` = dy·B, which `lora_grad`
      reads from the `linear_fwd` and `linear_grad_input` of the same
      linear, or from rank-0 launches of them where there is none).
    - Float tensors of activations, gradients, workspaces and io are stored
      in `activation-type`; weights keep their dtype (kernels get
      `w_dtype`); LoRA matrices, their gradients (and sums of them: an
      elementwise result keeps the type its inputs share) and AdamW moments
      stay f32.
    - `qlora.reshape`, and a `qlora.cast` whose input is already stored in
      the type its result would be, allocate nothing: the result is the
      input's buffer. `tensor.extract_slice` of token rows is a `qrt.copy`
      into a micro-batch buffer; f32 `arith.addf`/`subf`/`mulf`/`divf` are
      `scalar_binary` launches.
    - A linear whose weight is an `nf4.dequantize` gets the NF4 buffer
      (`w_dtype` "NF4" and the block sizes) and dequantizes the tiles it
      loads; with `nf4-gemm=dequantize` a `dequantize_nf4` launch right
      before it fills a `workspace` with the weight in the activation type,
      and the linear reads that.
    - LoRA dropout > 0 adds `dropout`, `dropout_stream` and `dropout_seed`
      (lora_a's seed) to linear_fwd, linear_grad_input and lora_grad, and
      the `step` io buffer as their last argument: each kernel recomputes
      the same mask.

    Errors: an unknown `activation-type`, an op without a lowering, dynamic
    shapes, integer tensors other than i32, a shape-only `qlora.weight`,
    LoRA dropout > 0 without a `dropout_stream`, a lora_param lora_a or an
    i64 `step` input, and arguments or results without a
    `qlora.input`/`qlora.output` name.

    ```
    $ qlora-opt model.mlir --qlora-build-training-step --qlora-lower-to-qrt
    ```
  }];
  let options = [
    Option<"activationType", "activation-type", "std::string",
           /*default=*/"\"f32\"",
           "Element type activations, gradients, workspaces and io tensors "
           "are stored in: f32 (the CPU backend), bf16 or f16">,
    Option<"nf4Gemm", "nf4-gemm", "::mlir::qlora::Nf4Gemm",
           /*default=*/"::mlir::qlora::Nf4Gemm::fused",
           "How a linear reads an NF4 weight",
           [{::llvm::cl::values(
             clEnumValN(::mlir::qlora::Nf4Gemm::fused, "fused",
                        "the GEMM dequantizes each weight tile it loads, so "
                        "every row tile decodes the weight again (default)"),
             clEnumValN(::mlir::qlora::Nf4Gemm::dequantize, "dequantize",
                        "a dequantize_nf4 launch writes the weight in the "
                        "activation type to a workspace just before, which "
                        "the GEMM reads as a dense weight: one decode a "
                        "launch, a weight-sized workspace"))}]>,
  ];
  let dependentDialects = [
    "::mlir::qrt::QrtDialect", "::mlir::func::FuncDialect"
  ];
}

def QrtPlanMemoryPass : Pass<"qrt-plan-memory", "::mlir::ModuleOp"> {
  let summary = "Give every device buffer an offset in one arena, from "
                "liveness";
  let description = [{
    Plans @train_step's device buffers into one arena. Program points are
    the instructions the runtime runs, the body's `qrt.launch` and
    `qrt.copy` ops in order. A transient buffer (`activation`, `recompute`,
    `gradient`, `workspace`) is live from the first instruction that takes
    it to the last (nowhere when none does); a persistent one (`weight`,
    `quantized_weight`, `lora`, `optimizer`, `io`) over the whole program.
    The runtime measures the same liveness from `train.bin` alone
    (`qlora-run --memory-report` prints its measured peak next to this one).

    Persistent buffers are packed from offset 0 in program order. Transient
    buffers are then placed greedily by decreasing size (ties: earlier first
    use first), each at the start of the smallest gap that fits among the
    buffers already placed whose lifetimes overlap its own, or past the
    last of them: TFLite's ArenaPlanner "greedy by size" with best fit.
    Offsets are multiples of max(`alignment`, the buffer's alignment), which
    becomes the buffer's `align`, and a buffer occupies its size rounded up
    to that. The result is deterministic.

    The plan is checked before it is written: two buffers live at the same
    program point never share a byte (an error names both otherwise). Then
    every device buffer gets its `offset` and the module
    `qrt.memory_plan = {arena_size, peak_bytes, peak_by_class,
    total_by_class}`: `peak_bytes` is the largest sum of the (rounded)
    buffers live at one program point, `peak_by_class` its split by class at
    that point, `total_by_class` every buffer's bytes by class, and
    `arena_size - peak_bytes` the fragmentation. Buffers placed
    `host_pinned` or `paged` are not in the arena and are left alone.

    With `timeline=FILE`, also writes the bytes live at every program point
    as CSV (replacing FILE atomically): a header, then one row
    `index,op,kernel,live_bytes,<one column per class>` per instruction
    (`op` is `launch` or `copy`, `kernel` the launched symbol); the largest
    `live_bytes` is `peak_bytes`.

    With `verify-only`, checks the offsets the buffers already have (those
    without one are skipped) instead of planning, and changes nothing.

    ```
    $ qlora-opt step.mlir --qrt-plan-memory="alignment=256 timeline=live.csv"
    ```
  }];
  let options = [
    Option<"alignment", "alignment", "int64_t", /*default=*/"64",
           "Least alignment of every arena offset, in bytes (a power of "
           "two)">,
    Option<"timeline", "timeline", "std::string", /*default=*/"",
           "Write the bytes live per class at every program point to this "
           "CSV file">,
    Option<"verifyOnly", "verify-only", "bool", /*default=*/"false",
           "Check the existing offsets for overlaps instead of planning">,
  ];
}

def QrtCodegenCudaPass : Pass<"qrt-codegen-cuda", "::mlir::ModuleOp"> {
  let summary = "Instantiate every qrt.kernel from kernels/ and compile it "
                "with NVRTC to CUBINs and PTX";
  let description = [{
    Ahead-of-time CUDA code generation, on a machine without a GPU: every
    `qrt.kernel` is instantiated from its `kernels/` template with its
    static parameters and the activation type (`CudaKernelSource.h`), and
    the translation unit is compiled with NVRTC once per architecture of
    `archs` (a CUBIN each) and, with `ptx`, once for `compute_80` (PTX that
    the driver JIT-compiles on newer GPUs). ptxas runs with `-v`; a kernel
    that spills registers is an error.

    The kernel's symbol becomes the instantiation's `extern "C"` entry
    (`<template>_<act>_<hash>`), since the CUDA backend looks functions up
    by the train.bin kernel's symbol; every `qrt.launch` follows the rename
    and gets the instantiation's grid and block, and kernels that turn out
    to be the same instantiation become one. The images are attached as
    `cuda.images`, a dictionary from architecture (`sm_80`, ..., `ptx`) to a
    `dense_resource` of `ui8` bytes, which the train.bin writer turns into
    4 KiB-aligned sections (`Kernel.images`):

    ```mlir
    qrt.kernel @rms_norm_fwd_bf16_5c0e... template "rms_norm_fwd"
      params {eps = 1.0e-05 : f64, hidden = 4096 : i64, ...}
      {cuda.images = {ptx = dense_resource<...> : tensor<9211xui8>,
                      sm_80 = dense_resource<...> : tensor<8824xui8>,
                      sm_90 = dense_resource<...> : tensor<9080xui8>}}
    qrt.launch @rms_norm_fwd_bf16_5c0e...(%x, %w, %y) grid [4096, 1, 1]
      block [256, 1, 1]
    ```

    Errors name the kernel and its template: a template without a CUDA
    implementation yet (`linear_*`, `lora_grad`, `attention_*`), a missing
    or invalid parameter, an NVRTC compile failure or a spill (with the
    first lines of NVRTC's log). A build without the CUDA toolkit has no
    NVRTC, and the pass fails saying so. `qloracc --cuda` runs it after
    `--qrt-plan-memory`.

    ```
    $ qlora-opt step.mlir --qrt-codegen-cuda="archs=sm_80,sm_90 activation-type=bf16"
    ```
  }];
  let options = [
    ListOption<"archs", "archs", "std::string",
               "CUBIN architectures, sm_NN (default: sm_80,sm_90)">,
    Option<"ptx", "ptx", "bool", /*default=*/"true",
           "Also compile compute_80 PTX for the driver's JIT">,
    Option<"activationType", "activation-type", "std::string",
           /*default=*/"\"f32\"",
           "Element type of activations and gradients the kernels read and "
           "write (as --qlora-lower-to-qrt's): f32 or bf16">,
  ];
}

def QloraTestCostModelPass : Pass<"qlora-test-cost-model", "::mlir::ModuleOp"> {
  let summary = "For tests only: remark every op's CostModelOpInterface "
                "FLOPs and bytes";
  let description = [{
    Emits, on every op that implements `CostModelOpInterface`, the remark
    `flops=<F> bytes=<B> phase=<forward|backward|optimizer>` (FLOPs printed
    as a whole number), so that lit tests can check the cost model with
    `-verify-diagnostics`. A `qlora` or `nf4` op without the interface is an
    error: the remat pass must be able to ask any of them. The IR is left
    unchanged.

    ```
    $ qlora-opt step.mlir --qlora-test-cost-model -verify-diagnostics
    ```
  }];
  // Loading qlora attaches the cost models of nf4's ops.
  let dependentDialects = ["::mlir::qlora::QloraDialect"];
}

#endif // QLORACC_PASSES_TD
