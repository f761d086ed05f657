//===- QrtDialect.td - The qrt runtime dialect -------------*- tablegen -*-===//
#ifndef QRT_DIALECT_TD
#define QRT_DIALECT_TD

include "mlir/IR/OpBase.td"

def Qrt_Dialect : Dialect {
  let name = "qrt";
  let cppNamespace = "::mlir::qrt";
  let summary = "What the qloracc runtime executes: buffers, kernels, copies";
  let description = [{
    The `qrt` dialect is the last stage before `train.bin`: the training
    step as the runtime's executor will walk it. Values are buffers (byte
    ranges with a size, an alignment, a class saying what they hold and a
    placement saying where they live), and operations act on them in
    program order:

    - `qrt.buffer` declares a buffer; after `--qrt-plan-memory` every device
      buffer also has its `offset` in the one device arena, so the peak is
      known before anything runs.
    - `qrt.kernel` names an instantiation of a template from `kernels/`
      with its static parameters; `qrt.launch` runs it on buffers with a
      CUDA grid, block and dynamic shared memory size (the CPU backend runs
      the same launch with its reference implementation).
    - `qrt.copy` moves bytes between buffers; `qrt.prefetch` and
      `qrt.evict` move `paged` buffers between pinned host memory and device
      pages ahead of use.

    ```mlir
    qrt.kernel @silu_64 template "silu_fwd" params {n = 64 : i64}
    func.func @step() {
      %x = qrt.buffer size 256 align 256 class <activation> placement <device>
             offset 0 : !qrt.buffer
      %y = qrt.buffer size 256 align 256 class <activation> placement <device>
             offset 256 : !qrt.buffer
      qrt.launch @silu_64(%x, %y) grid [1, 1, 1] block [64, 1, 1]
      return
    }
    ```
  }];
  let useDefaultAttributePrinterParser = 1;
  let useDefaultTypePrinterParser = 1;
  let extraClassDeclaration = [{
    /// Registers the attributes; defined next to their storage in
    /// QrtAttrs.cpp.
    void registerAttributes();
  }];
}

class Qrt_Op<string mnemonic, list<Trait> traits = []>
    : Op<Qrt_Dialect, mnemonic, traits>;

#endif // QRT_DIALECT_TD
