// The checks qloracc runs between pipeline stages, run alone in qlora-opt.
// RUN: qlora-opt %s -split-input-file -verify-diagnostics --qrt-verify-lowering

// A lowered step: only qrt.kernel at module level, and a @train_step of qrt
// ops with no arguments or results.
qrt.kernel @fill_0 template "fill" params {n = 4 : i64, value = 0.0 : f64}
func.func @train_step() {
  %0 = qrt.buffer size 16 align 64 class <activation> placement <device> : !qrt.buffer
  qrt.launch @fill_0(%0) grid [1, 1, 1] block [1, 1, 1]
  return
}

// -----

// expected-error@+1 {{must have no arguments or results}}
func.func @train_step(%lr: f32) {
  return
}
