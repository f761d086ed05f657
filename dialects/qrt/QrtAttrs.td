//===- QrtAttrs.td - qrt enums and attributes -------------*- tablegen -*-===//
#ifndef QRT_ATTRS_TD
#define QRT_ATTRS_TD

include "dialects/qrt/QrtDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

/// An i64 attribute read back as int64_t (I64Attr's accessor returns
/// uint64_t), so that verifiers and passes see negative values as negative.
def Qrt_I64Attr : TypedSignlessIntegerAttrBase<I64, "int64_t",
                                               "64-bit signless integer"> {
  let convertFromStorage = "$_self.getValue().getSExtValue()";
}

def Qrt_BufferClass : I32EnumAttr<"BufferClass",
    "what a buffer holds, for the memory report and the planner", [
    I32EnumAttrCase<"weight", 0>,
    I32EnumAttrCase<"lora", 1>,
    I32EnumAttrCase<"gradient", 2>,
    I32EnumAttrCase<"optimizer", 3>,
    I32EnumAttrCase<"activation", 4>,
    I32EnumAttrCase<"workspace", 5>,
    I32EnumAttrCase<"io", 6>,
    I32EnumAttrCase<"quantized_weight", 7>,
    I32EnumAttrCase<"recompute", 8>
  ]> {
  let cppNamespace = "::mlir::qrt";
  let genSpecializedAttr = 0;
}

def Qrt_BufferClassAttr : EnumAttr<Qrt_Dialect, Qrt_BufferClass, "class"> {
  let summary = "What a buffer holds";
  let description = [{
    `quantized_weight` (frozen NF4 weights with their scales: every buffer
    whose `type` is an `!nf4.tensor`, and only those), `weight` (the other
    frozen weights, in their dtype: embeddings, norms, an unquantized LM
    head), `lora` (trainable LoRA matrices), `gradient`, `optimizer` (AdamW
    moments), `activation` (forward values saved for the backward pass),
    `recompute` (forward values computed again in the backward pass: results
    of ops marked `qlora.recompute` by `--qlora-remat`), `workspace` (scratch
    of one kernel) or `io` (bound by the runtime: token batches, labels, the
    loss). Written `#qrt.class<activation>`.

    `quantized_weight`, `weight`, `lora`, `optimizer` and `io` buffers are
    persistent (live over the whole step); the others are transient (live
    from their first to their last use). Values 0 to 8 are train.bin's
    `BufferClass` too: new classes are appended.
  }];
  let assemblyFormat = "`<` $value `>`";
}

def Qrt_Placement : I32EnumAttr<"Placement", "where a buffer lives", [
    I32EnumAttrCase<"device", 0>,
    I32EnumAttrCase<"host_pinned", 1>,
    I32EnumAttrCase<"paged", 2>
  ]> {
  let cppNamespace = "::mlir::qrt";
  let genSpecializedAttr = 0;
}

def Qrt_PlacementAttr : EnumAttr<Qrt_Dialect, Qrt_Placement, "placement"> {
  let summary = "Where a buffer lives";
  let description = [{
    `device` (in the device arena), `host_pinned` (page-locked host memory
    the device reads directly) or `paged` (pinned host memory brought into
    device pages by `qrt.prefetch` and released by `qrt.evict`, with an
    on-demand fallback). Written `#qrt.placement<device>`.
  }];
  let assemblyFormat = "`<` $value `>`";
}

#endif // QRT_ATTRS_TD
