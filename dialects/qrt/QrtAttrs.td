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
    I32EnumAttrCase<"io", 6>
  ]> {
  let cppNamespace = "::mlir::qrt";
  let genSpecializedAttr = 0;
}

def Qrt_BufferClassAttr : EnumAttr<Qrt_Dialect, Qrt_BufferClass, "class"> {
  let summary = "What a buffer holds";
  let description = [{
    `weight` (frozen NF4 or bf16 weights), `lora` (trainable LoRA
    matrices), `gradient`, `optimizer` (AdamW moments), `activation` (saved
    or recomputed forward values), `workspace` (scratch of one kernel) or
    `io` (bound by the runtime: token batches, labels, the loss). Written
    `#qrt.class<activation>`.
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
