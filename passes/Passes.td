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

#endif // QLORACC_PASSES_TD
