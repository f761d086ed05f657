//===- QrtTypes.td - qrt types -----------------------------*- tablegen -*-===//
#ifndef QRT_TYPES_TD
#define QRT_TYPES_TD

include "dialects/qrt/QrtDialect.td"
include "mlir/IR/AttrTypeBase.td"

def Qrt_BufferType : TypeDef<Qrt_Dialect, "Buffer"> {
  let mnemonic = "buffer";
  let summary = "An opaque handle to a runtime buffer";
  let description = [{
    A handle to a byte range the runtime allocates. The type carries no
    size: size, alignment, class, placement and arena offset are attributes
    of the `qrt.buffer` op that defines the handle, so that memory planning
    rewrites one op instead of retyping every use, and buffers of different
    sizes flow through the same function signatures and kernel argument
    lists. Verifiers look through to the defining `qrt.buffer` where it is
    visible.
  }];
}

#endif // QRT_TYPES_TD
