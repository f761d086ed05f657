// RUN: qlora-opt %s -split-input-file --qrt-plan-memory | FileCheck %s
// RUN: qlora-opt %s -split-input-file --qrt-plan-memory=alignment=256 | FileCheck %s --check-prefix=ALIGN256
// The planner's own plans pass the overlap check.
// RUN: qlora-opt %s -split-input-file --qrt-plan-memory | qlora-opt -split-input-file --qrt-plan-memory=verify-only=true
// RUN: qlora-opt %s -split-input-file -verify-diagnostics --qrt-plan-memory=verify-only=true
// RUN: not qlora-opt %s -split-input-file --qrt-plan-memory=alignment=48 2>&1 | FileCheck %s --check-prefix=BAD-ALIGN
// RUN: echo 'module {}' | not qlora-opt --qrt-plan-memory 2>&1 | FileCheck %s --check-prefix=NO-STEP

// The whole chain on the tiny preset (2 layers, LoRA r=4 on all 7 linears):
// every op lowered, every device buffer placed, and the counts the model
// implies: 21 frozen weights, 28 LoRA matrices each with 2 moments and a
// named gradient read by its own adamw, 14 lora_grads, the 9 io buffers.
// RUN: qloracc-import --preset tiny --lora r=4,alpha=8,targets=all-linear --batch 2 --seq 8 \
// RUN:   | qlora-opt --qlora-build-training-step --qlora-lower-to-qrt --qrt-plan-memory > %t
// RUN: FileCheck %s --check-prefix=TINY < %t
// RUN: not grep -E "^ *(%[^ ]+ = )?qlora\." %t
// RUN: not grep -E "qrt.buffer .*placement <device> (name|type)" %t
// RUN: grep -c "class <weight>" %t | FileCheck %s --check-prefix=TINY-21
// RUN: grep -c "class <lora>" %t | FileCheck %s --check-prefix=TINY-28
// RUN: grep -c "class <optimizer>" %t | FileCheck %s --check-prefix=TINY-56
// RUN: grep -c "class <io>" %t | FileCheck %s --check-prefix=TINY-9
// RUN: grep -c 'weight.grad"' %t | FileCheck %s --check-prefix=TINY-28
// RUN: grep -c "qrt.launch @adamw" %t | FileCheck %s --check-prefix=TINY-28
// RUN: grep -c "qrt.launch @lora_grad" %t | FileCheck %s --check-prefix=TINY-14
// The peak exceeds the persistent bytes (weights, LoRA matrices, moments and
// io: 526144) and the arena holds the peak.
// RUN: %python -c "import re; t = open(r'%t').read(); a, p = (int(re.search(k + r' = (\d+)', t)[1]) for k in ('arena_size', 'peak_bytes')); assert 526144 < p <= a, (p, a)"
// TINY-21: {{^}}21{{$}}
// TINY-28: {{^}}28{{$}}
// TINY-56: {{^}}56{{$}}
// TINY-9: {{^}}9{{$}}
// TINY-14: {{^}}14{{$}}
// TINY: module attributes {{{.*}}qrt.memory_plan = {arena_size = {{[0-9]+}} : i64, peak_by_class = {{{.*}}}, peak_bytes = {{[0-9]+}} : i64, total_by_class = {activation = {{[0-9]+}} : i64, gradient = {{[0-9]+}} : i64, io = 576 : i64, lora = 32768 : i64, optimizer = 65536 : i64, weight = 427264 : i64, workspace = {{[0-9]+}} : i64}}}
// TINY: func.func @train_step() attributes {qlora.grad_accum = 1 : i64, qlora.optimizer = {
// TINY: qrt.buffer size 64 align 64 class <io> placement <device> offset 0 name "tokens" type tensor<2x8xi32>
// TINY: qrt.launch @embedding_fwd_0(
// TINY: qrt.launch @cross_entropy_fwd_0(
// TINY: qrt.launch @global_norm_0(
// TINY: qrt.launch @clip_coefficient_0(
// TINY: qrt.launch @adamw_{{[0-9]+}}(
// TINY: return

// BAD-ALIGN: error: alignment must be a positive power of two, got 48
// NO-STEP: error: expected a func.func @train_step with a body (run --qlora-lower-to-qrt first)

// Program points are the ops of the body (0-5: the buffers; 6-9: the
// launches). Persistent buffers (%w used at 6 only, %p at 9 only) are
// packed first and never reused: %w's 100 bytes take 128. Then by size:
// %a [6, 7] at 192; %b [7, 8] is live with %a, so it goes after it (448);
// %c [8, 9] is not live with %a and takes its place (192); %s [9] is live
// only with %c and takes %b's place (448). The paged buffer is not in the
// arena. The peak (w + p + a + b = 704) is at point 7 and the arena is no
// larger: no fragmentation.

// CHECK-LABEL: module attributes {qrt.memory_plan = {arena_size = 704 : i64,
// CHECK-SAME: peak_by_class = {activation = 512 : i64, gradient = 0 : i64, io = 0 : i64, lora = 64 : i64, optimizer = 0 : i64, weight = 128 : i64, workspace = 0 : i64},
// CHECK-SAME: peak_bytes = 704 : i64,
// CHECK-SAME: total_by_class = {activation = 512 : i64, gradient = 256 : i64, io = 0 : i64, lora = 64 : i64, optimizer = 0 : i64, weight = 128 : i64, workspace = 64 : i64}}}
// CHECK: func.func @train_step()
// CHECK-NEXT: qrt.buffer size 100 align 64 class <weight> placement <device> offset 0 :
// CHECK-NEXT: qrt.buffer size 64 align 64 class <lora> placement <device> offset 128 :
// CHECK-NEXT: qrt.buffer size 256 align 64 class <activation> placement <device> offset 192 :
// CHECK-NEXT: qrt.buffer size 256 align 64 class <activation> placement <device> offset 448 :
// CHECK-NEXT: qrt.buffer size 200 align 64 class <gradient> placement <device> offset 192 :
// CHECK-NEXT: qrt.buffer size 32 align 64 class <workspace> placement <device> offset 448 :
// CHECK-NEXT: qrt.buffer size 4096 align 64 class <weight> placement <paged> :

// With 256-byte alignment every buffer takes 256 bytes: persistent ones
// end at 512, %a/%c and %b/%s share as before.
// ALIGN256-LABEL: module attributes {qrt.memory_plan = {arena_size = 1024 : i64,
// ALIGN256-SAME: peak_bytes = 1024 : i64,
// ALIGN256: offset 0 :
// ALIGN256-NEXT: offset 256 :
// ALIGN256-NEXT: offset 512 :
// ALIGN256-NEXT: offset 768 :
// ALIGN256-NEXT: offset 512 :
// ALIGN256-NEXT: offset 768 :
qrt.kernel @k template "silu_fwd" params {}

func.func @train_step() {
  %w = qrt.buffer size 100 align 64 class <weight> placement <device>
         : !qrt.buffer
  %p = qrt.buffer size 64 align 64 class <lora> placement <device>
         : !qrt.buffer
  %a = qrt.buffer size 256 align 64 class <activation> placement <device>
         : !qrt.buffer
  %b = qrt.buffer size 256 align 64 class <activation> placement <device>
         : !qrt.buffer
  %c = qrt.buffer size 200 align 64 class <gradient> placement <device>
         : !qrt.buffer
  %s = qrt.buffer size 32 align 64 class <workspace> placement <device>
         : !qrt.buffer
  %h = qrt.buffer size 4096 align 64 class <weight> placement <paged>
         : !qrt.buffer
  qrt.launch @k(%w, %a) grid [1, 1, 1] block [1, 1, 1]
  qrt.launch @k(%a, %b) grid [1, 1, 1] block [1, 1, 1]
  qrt.launch @k(%b, %c) grid [1, 1, 1] block [1, 1, 1]
  qrt.launch @k(%c, %s, %p) grid [1, 1, 1] block [1, 1, 1]
  return
}

// -----

// A buffer's own alignment wins over the pass's: %y (align 256) goes to
// 256, and best fit puts %z into the gap below it. The 128 bytes between
// the io buffer and %z's neighbour are never live: the arena (512) exceeds
// the peak (x + y + z = 384). An unused activation lives only where it is
// declared and fits in the gap too. Copies are uses.

// CHECK-LABEL: module attributes {qrt.memory_plan = {arena_size = 512 : i64,
// CHECK-SAME: peak_by_class = {activation = 320 : i64, gradient = 0 : i64, io = 64 : i64, lora = 0 : i64, optimizer = 0 : i64, weight = 0 : i64, workspace = 0 : i64},
// CHECK-SAME: peak_bytes = 384 : i64,
// CHECK: func.func @train_step()
// CHECK-NEXT: qrt.buffer size 64 align 64 class <io> placement <device> offset 0 :
// CHECK-NEXT: qrt.buffer size 100 align 256 class <activation> placement <device> offset 256 :
// CHECK-NEXT: qrt.buffer size 64 align 64 class <activation> placement <device> offset 64 :
// CHECK-NEXT: qrt.buffer size 64 align 64 class <activation> placement <device> offset 64 :
qrt.kernel @k template "silu_fwd" params {}

func.func @train_step() {
  %x = qrt.buffer size 64 align 64 class <io> placement <device> : !qrt.buffer
  %y = qrt.buffer size 100 align 256 class <activation> placement <device>
         : !qrt.buffer
  %z = qrt.buffer size 64 align 64 class <activation> placement <device>
         : !qrt.buffer
  %unused = qrt.buffer size 64 align 64 class <activation> placement <device>
              : !qrt.buffer
  qrt.copy %x[0], %z[0], bytes 64
  qrt.launch @k(%z, %y) grid [1, 1, 1] block [1, 1, 1]
  return
}

// -----

// Offsets already there are re-planned; `verify-only` checks them instead
// and reports the two activations live together at one address.

// CHECK-LABEL: module attributes {qrt.memory_plan = {arena_size = 256 : i64,
// CHECK: qrt.buffer size 128 align 64 class <activation> placement <device> offset 0 :
// CHECK-NEXT: qrt.buffer size 128 align 64 class <activation> placement <device> offset 128 :
qrt.kernel @k template "silu_fwd" params {}

func.func @train_step() {
  // expected-note@+1 {{the other buffer}}
  %a = qrt.buffer size 128 align 64 class <activation> placement <device>
         offset 0 : !qrt.buffer
  // expected-error@+1 {{overlaps another buffer live at the same time: bytes [64, 192) live over program points [2, 2] against [0, 128) live over [2, 2]}}
  %b = qrt.buffer size 128 align 64 class <activation> placement <device>
         offset 64 : !qrt.buffer
  qrt.launch @k(%a, %b) grid [1, 1, 1] block [1, 1, 1]
  return
}
