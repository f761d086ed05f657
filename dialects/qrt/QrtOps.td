//===- QrtOps.td - qrt operations --------------------------*- tablegen -*-===//
#ifndef QRT_OPS_TD
#define QRT_OPS_TD

include "dialects/qrt/QrtDialect.td"
include "dialects/qrt/QrtAttrs.td"
include "dialects/qrt/QrtTypes.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

//===----------------------------------------------------------------------===//
// Buffers
//===----------------------------------------------------------------------===//

def Qrt_BufferOp : Qrt_Op<"buffer"> {
  let summary = "Declares a runtime buffer";
  let description = [{
    A buffer of `size` bytes aligned to `align` (a power of two), holding
    data of one `class` and living at one `placement`. After
    `--qrt-plan-memory`, `offset` is its byte offset in the arena of its
    placement, a multiple of `align`; buffers whose lifetimes overlap never
    overlap in the arena.

    `--qlora-lower-to-qrt` also records what the buffer holds, for the
    `train.bin` writer and the memory report:

    - `name`: the parameter name (`weight`, `lora`), `<param>.exp_avg` /
      `<param>.exp_avg_sq` (`optimizer`), `<param>.grad` (the gradient an
      AdamW update reads), or the name the runtime binds (`io`: `tokens`,
      `labels`, `lr`, `step`, `weight_decay`, `max_grad_norm`, `loss`,
      `grad_norm`; constants are `io` buffers named `constant_<n>`).
    - `type`: the tensor or scalar type stored in it (`tensor<64x64xbf16>`,
      `f32`, `i64`); `size` is at least that type's byte size.
    - `init`: the initial contents, loaded once before the first step: a
      frozen weight's `#qlora.source` or inline elements, a LoRA matrix's
      `#qlora.init<kaiming_uniform>` / `#qlora.init<zeros>` (with `seed`),
      `#qlora.init<zeros>` for AdamW moments, or a constant's value.
      Without `init` the contents are undefined until written.
    - `seed`: the counter-based generator's seed of a random `init`.

    ```mlir
    %b = qrt.buffer size 4096 align 256 class <activation>
           placement <device> offset 1024 : !qrt.buffer
    %a = qrt.buffer size 1024 align 64 class <lora> placement <device>
           name "model.layers.0.self_attn.q_proj.lora_A.weight"
           type tensor<4x64xf32> init(#qlora.init<kaiming_uniform>) seed 0
           : !qrt.buffer
    ```
  }];
  let arguments = (ins Qrt_I64Attr:$size, Qrt_I64Attr:$alignment,
                       Qrt_BufferClassAttr:$buffer_class,
                       Qrt_PlacementAttr:$placement,
                       OptionalAttr<Qrt_I64Attr>:$offset,
                       OptionalAttr<StrAttr>:$name,
                       OptionalAttr<TypeAttr>:$type,
                       OptionalAttr<AnyAttr>:$init,
                       OptionalAttr<Qrt_I64Attr>:$seed);
  let results = (outs Res<Qrt_BufferType, "the new buffer",
                          [MemAlloc<DefaultResource>]>:$result);
  let assemblyFormat = [{
    `size` $size `align` $alignment `class` $buffer_class
    `placement` $placement (`offset` $offset^)? (`name` $name^)?
    (`type` $type^)? (`init` `(` $init^ `)`)? (`seed` $seed^)? attr-dict `:`
    type($result)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The stored type (`type`), or null when the buffer does not say.
    ::mlir::Type getStoredType() {
      std::optional<::mlir::Type> type = getType();
      return type ? *type : ::mlir::Type();
    }
  }];
}

def Qrt_CopyOp : Qrt_Op<"copy"> {
  let summary = "Copies bytes from one buffer to another";
  let description = [{
    Copies `bytes` bytes from `src` at `src_offset` to `dst` at
    `dst_offset`. Where a buffer is defined by a visible `qrt.buffer`, the
    range must lie inside it; two ranges of one buffer must not overlap.

    ```mlir
    qrt.copy %host[0], %dev[1024], bytes 4096
    ```
  }];
  let arguments = (ins Arg<Qrt_BufferType, "source", [MemRead]>:$src,
                       Qrt_I64Attr:$src_offset,
                       Arg<Qrt_BufferType, "destination", [MemWrite]>:$dst,
                       Qrt_I64Attr:$dst_offset,
                       Qrt_I64Attr:$bytes);
  let assemblyFormat = [{
    $src `[` $src_offset `]` `,` $dst `[` $dst_offset `]` `,` `bytes` $bytes
    attr-dict
  }];
  let hasVerifier = 1;
}

class Qrt_PagingOp<string mnemonic, string what> : Qrt_Op<mnemonic> {
  let summary = what # " a paged buffer";
  let arguments = (ins Arg<Qrt_BufferType, "a paged buffer",
                           [MemRead, MemWrite]>:$buffer);
  let assemblyFormat = "$buffer attr-dict";
  let hasVerifier = 1;
}

def Qrt_PrefetchOp : Qrt_PagingOp<"prefetch", "Brings into device pages"> {
  let description = [{
    Starts moving a `paged` buffer from pinned host memory into device
    pages so that it is resident when a later launch uses it. The compiler
    schedules prefetches ahead of use; the runtime falls back to an
    on-demand copy if a launch finds the buffer absent. The buffer, when
    its `qrt.buffer` is visible, must have placement `paged`. It reads and
    writes the buffer, so it stays ordered with the launches and copies
    around it.

    ```mlir
    qrt.prefetch %w
    ```
  }];
}

def Qrt_EvictOp : Qrt_PagingOp<"evict", "Releases the device pages of"> {
  let description = [{
    Releases the device pages of a `paged` buffer once its last use before
    the next prefetch has run; the host copy stays valid (pages are written
    back if a kernel wrote them). The buffer, when its `qrt.buffer` is
    visible, must have placement `paged`.

    ```mlir
    qrt.evict %w
    ```
  }];
}

//===----------------------------------------------------------------------===//
// Kernels
//===----------------------------------------------------------------------===//

def Qrt_KernelOp : Qrt_Op<"kernel", [Symbol, HasParent<"::mlir::ModuleOp">]> {
  let summary = "An instantiation of a kernel template from kernels/";
  let description = [{
    Names one instantiation of a CUDA C++ kernel template: `template` is the
    template's name in `kernels/` (a C++ identifier) and `params` its static
    parameters (integers, floats, booleans, strings or types).
    `--qrt-codegen-cuda` compiles one CUBIN per architecture and PTX per
    kernel; the CPU backend looks up its reference implementation by
    template name and runs it with the same parameters.

    ```mlir
    qrt.kernel @rms_norm_fwd_4096 template "rms_norm_fwd"
      params {hidden = 4096 : i64, eps = 1.0e-05 : f64, dtype = bf16}
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, StrAttr:$template_name,
                       DictionaryAttr:$params);
  let assemblyFormat = [{
    $sym_name `template` $template_name `params` $params attr-dict
  }];
  let hasVerifier = 1;
}

def Qrt_LaunchOp : Qrt_Op<"launch",
    [DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "Launches a qrt.kernel on buffers";
  let description = [{
    Runs kernel `@kernel` with the buffers as arguments, in order, on a
    CUDA grid of `grid` blocks of `block` threads (x, y, z) with `smem`
    bytes of dynamic shared memory (default 0, printed only when non-zero).
    The kernel may read and write every argument, and has no other effect:
    a launch without arguments is dead code.

    Limits are CUDA's for sm_80 and sm_90: every extent positive, grid
    y and z at most 65535, block x and y at most 1024, z at most 64, at
    most 1024 threads per block, and at most 227 KiB (232448 bytes) of
    shared memory per block (sm_90's opt-in maximum; the remaining 1 KiB of
    the 228 KiB per SM is reserved by CUDA).

    ```mlir
    qrt.launch @rms_norm_fwd_4096(%x, %w, %y) grid [64, 1, 1]
      block [256, 1, 1] smem 1024
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$kernel,
                       Arg<Variadic<Qrt_BufferType>, "kernel arguments",
                           [MemRead, MemWrite]>:$args,
                       DenseI64ArrayAttr:$grid,
                       DenseI64ArrayAttr:$block,
                       DefaultValuedAttr<Qrt_I64Attr, "0">:$smem);
  let assemblyFormat = [{
    $kernel `(` $args `)` `grid` $grid `block` $block (`smem` $smem^)?
    attr-dict
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Largest dynamic shared memory one block may use (sm_90 opt-in).
    static constexpr int64_t kMaxSharedMemoryBytes = 227 * 1024;
    /// Largest number of threads in one block.
    static constexpr int64_t kMaxThreadsPerBlock = 1024;
  }];
}

#endif // QRT_OPS_TD
