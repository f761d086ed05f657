// RUN: qlora-opt %s -split-input-file -verify-diagnostics

//===----------------------------------------------------------------------===//
// qrt.buffer
//===----------------------------------------------------------------------===//

func.func @buffer_zero_size() {
  // expected-error@+1 {{'size' must be a positive number of bytes, got 0}}
  %b = qrt.buffer size 0 align 256 class <activation> placement <device>
         : !qrt.buffer
  return
}

// -----

func.func @buffer_negative_size() {
  // expected-error@+1 {{'size' must be a positive number of bytes, got -4096}}
  %b = qrt.buffer size -4096 align 256 class <activation> placement <device>
         : !qrt.buffer
  return
}

// -----

func.func @buffer_alignment_not_power_of_two() {
  // expected-error@+1 {{'alignment' must be a positive power of two, got 48}}
  %b = qrt.buffer size 4096 align 48 class <activation> placement <device>
         : !qrt.buffer
  return
}

// -----

func.func @buffer_zero_alignment() {
  // expected-error@+1 {{'alignment' must be a positive power of two, got 0}}
  %b = qrt.buffer size 4096 align 0 class <activation> placement <device>
         : !qrt.buffer
  return
}

// -----

func.func @buffer_negative_offset() {
  // expected-error@+1 {{'offset' must be non-negative, got -256}}
  %b = qrt.buffer size 4096 align 256 class <activation> placement <device>
         offset -256 : !qrt.buffer
  return
}

// -----

func.func @buffer_misaligned_offset() {
  // expected-error@+1 {{'offset' must be a multiple of the alignment 256, got 1000}}
  %b = qrt.buffer size 4096 align 256 class <activation> placement <device>
         offset 1000 : !qrt.buffer
  return
}

// -----

func.func @buffer_smaller_than_type() {
  // expected-error@+1 {{'size' 64 is smaller than the 128 bytes of its 'type' 'tensor<4x8xf32>'}}
  %b = qrt.buffer size 64 align 64 class <activation> placement <device>
         type tensor<4x8xf32> : !qrt.buffer
  return
}

// -----

func.func @buffer_dynamic_type() {
  // expected-error@+1 {{'type' must be a statically shaped tensor or a scalar of integers or floats, got 'tensor<?x8xf32>'}}
  %b = qrt.buffer size 64 align 64 class <activation> placement <device>
         type tensor<?x8xf32> : !qrt.buffer
  return
}

// -----

func.func @buffer_seed_without_init() {
  // expected-error@+1 {{'seed' needs an 'init' to seed}}
  %b = qrt.buffer size 64 align 64 class <lora> placement <device> seed 0
         : !qrt.buffer
  return
}

// -----

func.func @buffer_unknown_class() {
  // expected-error@+2 {{expected ::mlir::qrt::BufferClass to be one of: weight, lora, gradient, optimizer, activation, workspace, io}}
  // expected-error@+1 {{failed to parse Qrt_BufferClassAttr parameter 'value'}}
  %b = qrt.buffer size 4096 align 256 class <scratch> placement <device>
         : !qrt.buffer
  return
}

//===----------------------------------------------------------------------===//
// qrt.copy
//===----------------------------------------------------------------------===//

// -----

func.func @copy_zero_bytes(%a: !qrt.buffer, %b: !qrt.buffer) {
  // expected-error@+1 {{'bytes' must be positive, got 0}}
  qrt.copy %a[0], %b[0], bytes 0
  return
}

// -----

func.func @copy_negative_src_offset(%a: !qrt.buffer, %b: !qrt.buffer) {
  // expected-error@+1 {{'src_offset' must be non-negative, got -64}}
  qrt.copy %a[-64], %b[0], bytes 64
  return
}

// -----

func.func @copy_negative_dst_offset(%a: !qrt.buffer, %b: !qrt.buffer) {
  // expected-error@+1 {{'dst_offset' must be non-negative, got -64}}
  qrt.copy %a[0], %b[-64], bytes 64
  return
}

// -----

func.func @copy_src_out_of_bounds(%b: !qrt.buffer) {
  %a = qrt.buffer size 4096 align 256 class <io> placement <host_pinned>
         : !qrt.buffer
  // expected-error@+1 {{'src' range of 4096 bytes at offset 1024 exceeds its buffer of 4096 bytes}}
  qrt.copy %a[1024], %b[0], bytes 4096
  return
}

// -----

func.func @copy_src_offset_past_end(%b: !qrt.buffer) {
  %a = qrt.buffer size 4096 align 256 class <io> placement <host_pinned>
         : !qrt.buffer
  // expected-error@+1 {{'src' range of 1 bytes at offset 8192 exceeds its buffer of 4096 bytes}}
  qrt.copy %a[8192], %b[0], bytes 1
  return
}

// -----

func.func @copy_dst_out_of_bounds(%a: !qrt.buffer) {
  %b = qrt.buffer size 256 align 256 class <activation> placement <device>
         : !qrt.buffer
  // expected-error@+1 {{'dst' range of 512 bytes at offset 0 exceeds its buffer of 256 bytes}}
  qrt.copy %a[0], %b[0], bytes 512
  return
}

// -----

func.func @copy_overlapping(%a: !qrt.buffer) {
  // expected-error@+1 {{copies between overlapping ranges of one buffer: 'src_offset' 32 and 'dst_offset' 0 must be at least 'bytes' (64) apart}}
  qrt.copy %a[32], %a[0], bytes 64
  return
}

//===----------------------------------------------------------------------===//
// qrt.prefetch / qrt.evict
//===----------------------------------------------------------------------===//

// -----

func.func @prefetch_device_buffer() {
  %b = qrt.buffer size 4096 align 256 class <weight> placement <device>
         : !qrt.buffer
  // expected-error@+1 {{'buffer' must have placement <paged>, got <device>}}
  qrt.prefetch %b
  return
}

// -----

func.func @evict_host_pinned_buffer() {
  %b = qrt.buffer size 4096 align 256 class <io> placement <host_pinned>
         : !qrt.buffer
  // expected-error@+1 {{'buffer' must have placement <paged>, got <host_pinned>}}
  qrt.evict %b
  return
}

//===----------------------------------------------------------------------===//
// qrt.kernel
//===----------------------------------------------------------------------===//

// -----

// expected-error@+1 {{'template_name' must be a C++ identifier naming a template in kernels/, got "rms-norm"}}
qrt.kernel @k template "rms-norm" params {}

// -----

// expected-error@+1 {{'template_name' must be a C++ identifier naming a template in kernels/, got "1x1"}}
qrt.kernel @k template "1x1" params {}

// -----

// expected-error@+1 {{'template_name' must be a C++ identifier naming a template in kernels/, got ""}}
qrt.kernel @k template "" params {}

// -----

// expected-error@+1 {{param 'tile' must be an integer, float, bool, string, type or i64 array, got [128, 128]}}
qrt.kernel @k template "gemm" params {tile = [128, 128]}

// -----

func.func @kernel_not_in_module() {
  // expected-error@+1 {{expects parent op 'builtin.module'}}
  qrt.kernel @k template "silu_fwd" params {}
  return
}

//===----------------------------------------------------------------------===//
// qrt.launch
//===----------------------------------------------------------------------===//

// -----

func.func @launch_undefined_kernel(%b: !qrt.buffer) {
  // expected-error@+1 {{'kernel' references an undefined symbol @missing}}
  qrt.launch @missing(%b) grid [1, 1, 1] block [32, 1, 1]
  return
}

// -----

func.func @not_a_kernel() {
  return
}

func.func @launch_a_function(%b: !qrt.buffer) {
  // expected-error@+1 {{'kernel' @not_a_kernel must be a 'qrt.kernel', got 'func.func'}}
  qrt.launch @not_a_kernel(%b) grid [1, 1, 1] block [32, 1, 1]
  return
}

// -----

qrt.kernel @k template "silu_fwd" params {}

func.func @launch_grid_two_entries(%b: !qrt.buffer) {
  // expected-error@+1 {{'grid' must have 3 entries (x, y, z), got 2}}
  qrt.launch @k(%b) grid [1, 1] block [32, 1, 1]
  return
}

// -----

qrt.kernel @k template "silu_fwd" params {}

func.func @launch_grid_zero(%b: !qrt.buffer) {
  // expected-error@+1 {{'grid' y must be positive, got 0}}
  qrt.launch @k(%b) grid [1, 0, 1] block [32, 1, 1]
  return
}

// -----

qrt.kernel @k template "silu_fwd" params {}

func.func @launch_grid_x_too_large(%b: !qrt.buffer) {
  // expected-error@+1 {{'grid' x must be at most 2147483647, got 2147483648}}
  qrt.launch @k(%b) grid [2147483648, 1, 1] block [32, 1, 1]
  return
}

// -----

qrt.kernel @k template "silu_fwd" params {}

func.func @launch_grid_z_too_large(%b: !qrt.buffer) {
  // expected-error@+1 {{'grid' z must be at most 65535, got 65536}}
  qrt.launch @k(%b) grid [1, 1, 65536] block [32, 1, 1]
  return
}

// -----

qrt.kernel @k template "silu_fwd" params {}

func.func @launch_block_four_entries(%b: !qrt.buffer) {
  // expected-error@+1 {{'block' must have 3 entries (x, y, z), got 4}}
  qrt.launch @k(%b) grid [1, 1, 1] block [32, 1, 1, 1]
  return
}

// -----

qrt.kernel @k template "silu_fwd" params {}

func.func @launch_block_negative(%b: !qrt.buffer) {
  // expected-error@+1 {{'block' x must be positive, got -32}}
  qrt.launch @k(%b) grid [1, 1, 1] block [-32, 1, 1]
  return
}

// -----

qrt.kernel @k template "silu_fwd" params {}

func.func @launch_block_x_too_large(%b: !qrt.buffer) {
  // expected-error@+1 {{'block' x must be at most 1024, got 2048}}
  qrt.launch @k(%b) grid [1, 1, 1] block [2048, 1, 1]
  return
}

// -----

qrt.kernel @k template "silu_fwd" params {}

func.func @launch_block_z_too_large(%b: !qrt.buffer) {
  // expected-error@+1 {{'block' z must be at most 64, got 128}}
  qrt.launch @k(%b) grid [1, 1, 1] block [1, 1, 128]
  return
}

// -----

qrt.kernel @k template "silu_fwd" params {}

func.func @launch_too_many_threads(%b: !qrt.buffer) {
  // expected-error@+1 {{'block' must have at most 1024 threads, got 2048 (32 x 64 x 1)}}
  qrt.launch @k(%b) grid [1, 1, 1] block [32, 64, 1]
  return
}

// -----

qrt.kernel @k template "silu_fwd" params {}

func.func @launch_negative_smem(%b: !qrt.buffer) {
  // expected-error@+1 {{'smem' must be in [0, 232448] bytes, got -1}}
  qrt.launch @k(%b) grid [1, 1, 1] block [32, 1, 1] smem -1
  return
}

// -----

qrt.kernel @k template "silu_fwd" params {}

func.func @launch_too_much_smem(%b: !qrt.buffer) {
  // expected-error@+1 {{'smem' must be in [0, 232448] bytes, got 233472}}
  qrt.launch @k(%b) grid [1, 1, 1] block [32, 1, 1] smem 233472
  return
}

// -----

func.func @nf4_buffer_of_class_weight() {
  // expected-error@+1 {{a buffer stores an !nf4.tensor if and only if its class is <quantized_weight>}}
  %w = qrt.buffer size 80 align 64 class <weight> placement <device> type !nf4.tensor<16x8, block = 64> : !qrt.buffer
  return
}
