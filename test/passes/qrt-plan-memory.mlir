// RUN: qlora-opt %s -split-input-file --qrt-plan-memory | FileCheck %s
// RUN: qlora-opt %s -split-input-file --qrt-plan-memory=alignment=256 | FileCheck %s --check-prefix=ALIGN256
// The planner's own plans pass the overlap check.
// RUN: qlora-opt %s -split-input-file --qrt-plan-memory | qlora-opt -split-input-file --qrt-plan-memory=verify-only=true
// RUN: qlora-opt %s -split-input-file -verify-diagnostics --qrt-plan-memory=verify-only=true
// RUN: not qlora-opt %s -split-input-file --qrt-plan-memory=alignment=48 2>&1 | FileCheck %s --check-prefix=BAD-ALIGN
// RUN: echo 'module {}' | not qlora-opt --qrt-plan-memory 2>&1 | FileCheck %s --check-prefix=NO-STEP
// `timeline=-` writes each case's CSV to stdout.
// RUN: qlora-opt %s -split-input-file --qrt-plan-memory=timeline=- -o /dev/null | FileCheck %s --check-prefix=TIMELINE
// RUN: not qlora-opt %s -split-input-file --qrt-plan-memory=timeline=%t-no-such-dir/live.csv -o /dev/null 2>&1 | FileCheck %s --check-prefix=BAD-TIMELINE

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
// The timeline has one row per launch or copy, and its largest live_bytes is
// the planned peak.
// RUN: qloracc-import --preset tiny --lora r=4,alpha=8,targets=all-linear --batch 2 --seq 8 \
// RUN:   | qlora-opt --qlora-build-training-step --qlora-lower-to-qrt --qrt-plan-memory=timeline=%t.csv > %t.planned
// RUN: FileCheck %s --check-prefix=TINY-CSV < %t.csv
// RUN: %python -c "import csv, re, sys; rows = list(csv.DictReader(open(sys.argv[1]))); p = int(re.search(r'peak_bytes = (\d+)', open(sys.argv[2]).read())[1]); n = open(sys.argv[2]).read().count('qrt.launch') + open(sys.argv[2]).read().count('qrt.copy'); assert len(rows) == n and max(int(r['live_bytes']) for r in rows) == p, (len(rows), n, p); print('OK')" %t.csv %t.planned | FileCheck %s --check-prefix=OK
// OK: OK
// TINY-CSV: index,op,kernel,live_bytes,weight,lora,gradient,optimizer,activation,workspace,io,quantized_weight,recompute
// TINY-CSV-NEXT: 0,launch,embedding_fwd_0,{{[0-9]+}},427264,32768,0,65536,{{[0-9]+}},0,576,0,0
// TINY-21: {{^}}21{{$}}
// TINY-28: {{^}}28{{$}}
// TINY-56: {{^}}56{{$}}
// TINY-9: {{^}}9{{$}}
// TINY-14: {{^}}14{{$}}
// TINY: module attributes {{{.*}}qrt.memory_plan = {arena_size = {{[0-9]+}} : i64, peak_by_class = {{{.*}}}, peak_bytes = {{[0-9]+}} : i64, total_by_class = {activation = {{[0-9]+}} : i64, gradient = {{[0-9]+}} : i64, io = 576 : i64, lora = 32768 : i64, optimizer = 65536 : i64, quantized_weight = 0 : i64, recompute = 0 : i64, weight = 427264 : i64, workspace = {{[0-9]+}} : i64}}}
// TINY: func.func @train_step() attributes {qlora.grad_accum = 1 : i64, qlora.optimizer = {
// TINY: qrt.buffer size 64 align 64 class <io> placement <device> offset 0 name "tokens" type tensor<2x8xi32>
// TINY: qrt.launch @embedding_fwd_0(
// TINY: qrt.launch @cross_entropy_fwd_0(
// TINY: qrt.launch @global_norm_0(
// TINY: qrt.launch @clip_coefficient_0(
// TINY: qrt.launch @adamw_{{[0-9]+}}(
// TINY: return

// BAD-ALIGN: error: alignment must be a positive power of two, got 48
// BAD-TIMELINE: error: cannot write the memory timeline '{{.*}}no-such-dir/live.csv': {{.*}}
// NO-STEP: error: expected a func.func @train_step with a body (run --qlora-lower-to-qrt first)

// Program points are the instructions (0-3: the launches). Persistent
// buffers (%w used at 0 only, %p at 3 only) are packed first and never
// reused: %w's 100 bytes take 128. Then by size: %a [0, 1] at 192; %b [1, 2]
// is live with %a, so it goes after it (448); %c [2, 3] is not live with %a
// and takes its place (192); %s [3] is live only with %c and takes %b's
// place (448). The paged buffer is not in the arena. The peak (w + p + a + b
// = 704) is at point 1 and the arena is no larger: no fragmentation. The
// timeline shows it point by point.

// CHECK-LABEL: module attributes {qrt.memory_plan = {arena_size = 704 : i64,
// CHECK-SAME: peak_by_class = {activation = 512 : i64, gradient = 0 : i64, io = 0 : i64, lora = 64 : i64, optimizer = 0 : i64, quantized_weight = 0 : i64, recompute = 0 : i64, weight = 128 : i64, workspace = 0 : i64},
// CHECK-SAME: peak_bytes = 704 : i64,
// CHECK-SAME: total_by_class = {activation = 512 : i64, gradient = 256 : i64, io = 0 : i64, lora = 64 : i64, optimizer = 0 : i64, quantized_weight = 0 : i64, recompute = 0 : i64, weight = 128 : i64, workspace = 64 : i64}}}
// CHECK: func.func @train_step()
// CHECK-NEXT: qrt.buffer size 100 align 64 class <weight> placement <device> offset 0 :
// CHECK-NEXT: qrt.buffer size 64 align 64 class <lora> placement <device> offset 128 :
// CHECK-NEXT: qrt.buffer size 256 align 64 class <activation> placement <device> offset 192 :
// CHECK-NEXT: qrt.buffer size 256 align 64 class <activation> placement <device> offset 448 :
// CHECK-NEXT: qrt.buffer size 200 align 64 class <gradient> placement <device> offset 192 :
// CHECK-NEXT: qrt.buffer size 32 align 64 class <workspace> placement <device> offset 448 :
// CHECK-NEXT: qrt.buffer size 4096 align 64 class <weight> placement <paged> :

// TIMELINE: index,op,kernel,live_bytes,weight,lora,gradient,optimizer,activation,workspace,io,quantized_weight,recompute
// TIMELINE-NEXT: 0,launch,k,448,128,64,0,0,256,0,0,0,0
// TIMELINE-NEXT: 1,launch,k,704,128,64,0,0,512,0,0,0,0
// TIMELINE-NEXT: 2,launch,k,704,128,64,256,0,256,0,0,0,0
// TIMELINE-NEXT: 3,launch,k,512,128,64,256,0,0,64,0,0,0

// With 256-byte alignment every buffer takes 256 bytes and says so: persistent ones
// end at 512, %a/%c and %b/%s share as before.
// ALIGN256-LABEL: module attributes {qrt.memory_plan = {arena_size = 1024 : i64,
// ALIGN256-SAME: peak_bytes = 1024 : i64,
// ALIGN256: align 256 class <weight> placement <device> offset 0 :
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
// the peak (x + y + z = 384). An unused activation is live nowhere and
// fits in the gap too. Copies are instructions and uses.

// CHECK-LABEL: module attributes {qrt.memory_plan = {arena_size = 512 : i64,
// CHECK-SAME: peak_by_class = {activation = 320 : i64, gradient = 0 : i64, io = 64 : i64, lora = 0 : i64, optimizer = 0 : i64, quantized_weight = 0 : i64, recompute = 0 : i64, weight = 0 : i64, workspace = 0 : i64},
// CHECK-SAME: peak_bytes = 384 : i64,
// CHECK: func.func @train_step()
// CHECK-NEXT: qrt.buffer size 64 align 64 class <io> placement <device> offset 0 :
// CHECK-NEXT: qrt.buffer size 100 align 256 class <activation> placement <device> offset 256 :
// CHECK-NEXT: qrt.buffer size 64 align 64 class <activation> placement <device> offset 64 :
// CHECK-NEXT: qrt.buffer size 64 align 64 class <activation> placement <device> offset 64 :

// TIMELINE: index,op,kernel,live_bytes,
// TIMELINE-NEXT: 0,copy,,128,0,0,0,0,64,0,64,0,0
// TIMELINE-NEXT: 1,launch,k,384,0,0,0,0,320,0,64,0,0
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
// TIMELINE: index,op,kernel,live_bytes,
// TIMELINE-NEXT: 0,launch,k,256,0,0,0,0,256,0,0,0,0
qrt.kernel @k template "silu_fwd" params {}

func.func @train_step() {
  // expected-note@+1 {{the other buffer}}
  %a = qrt.buffer size 128 align 64 class <activation> placement <device>
         offset 0 : !qrt.buffer
  // expected-error@+1 {{overlaps another buffer live at the same time: bytes [64, 192) live over program points [0, 0] against [0, 128) live over [0, 0]}}
  %b = qrt.buffer size 128 align 64 class <activation> placement <device>
         offset 64 : !qrt.buffer
  qrt.launch @k(%a, %b) grid [1, 1, 1] block [1, 1, 1]
  return
}

// -----

// NF4 weights are persistent like other weights; recomputed values are
// transient like activations: %r [1, 2] is live with %x [0, 1] and goes
// after it. The peak (q + x + r) is at point 1.

// CHECK-LABEL: module attributes {qrt.memory_plan = {arena_size = 384 : i64,
// CHECK-SAME: peak_by_class = {activation = 128 : i64, gradient = 0 : i64, io = 0 : i64, lora = 0 : i64, optimizer = 0 : i64, quantized_weight = 128 : i64, recompute = 128 : i64, weight = 0 : i64, workspace = 0 : i64},
// CHECK-SAME: peak_bytes = 384 : i64,
// CHECK: qrt.buffer size 80 align 64 class <quantized_weight> placement <device> offset 0 type !nf4.tensor<16x8, block = 64> :
// CHECK-NEXT: qrt.buffer size 128 align 64 class <activation> placement <device> offset 128 :
// CHECK-NEXT: qrt.buffer size 128 align 64 class <recompute> placement <device> offset 256 :
// TIMELINE: index,op,kernel,live_bytes,
// TIMELINE-NEXT: 0,launch,k,256,0,0,0,0,128,0,0,128,0
// TIMELINE-NEXT: 1,launch,k,384,0,0,0,0,128,0,0,128,128
// TIMELINE-NEXT: 2,launch,k,256,0,0,0,0,0,0,0,128,128
qrt.kernel @k template "silu_fwd" params {}

func.func @train_step() {
  %q = qrt.buffer size 80 align 64 class <quantized_weight> placement <device>
         type !nf4.tensor<16x8, block = 64> : !qrt.buffer
  %x = qrt.buffer size 128 align 64 class <activation> placement <device>
         : !qrt.buffer
  %r = qrt.buffer size 128 align 64 class <recompute> placement <device>
         : !qrt.buffer
  qrt.launch @k(%q, %x) grid [1, 1, 1] block [1, 1, 1]
  qrt.launch @k(%x, %r) grid [1, 1, 1] block [1, 1, 1]
  qrt.launch @k(%r) grid [1, 1, 1] block [1, 1, 1]
  return
}
