// RUN: qlora-opt %s -split-input-file -verify-diagnostics

func.func @buffer_size_zero() {
  // expected-error@+1 {{'qrt.buffer' op 'size' must be a positive number of bytes, got 0}}
  %a = qrt.buffer size 0 align 256 class <activation> placement <device> : !qrt.buffer
  return
}

// -----

func.func @buffer_alignment_not_power_of_two() {
  // expected-error@+1 {{'qrt.buffer' op 'alignment' must be a positive power of two, got 48}}
  %a = qrt.buffer size 1024 align 48 class <activation> placement <device> : !qrt.buffer
  return
}

// -----

func.func @buffer_offset_misaligned() {
  // expected-error@+1 {{'qrt.buffer' op 'offset' must be a multiple of the alignment 256, got 100}}
  %a = qrt.buffer size 1024 align 256 class <activation> placement <device> offset 100 : !qrt.buffer
  return
}

// -----

func.func @copy_past_source() {
  %a = qrt.buffer size 1024 align 256 class <activation> placement <device> : !qrt.buffer
  %b = qrt.buffer size 4096 align 256 class <activation> placement <device> : !qrt.buffer
  // expected-error@+1 {{'qrt.copy' op 'src' range of 1024 bytes at offset 512 exceeds its buffer of 1024 bytes}}
  qrt.copy %a[512], %b[0], bytes 1024
  return
}

// -----

func.func @copy_past_destination() {
  %a = qrt.buffer size 4096 align 256 class <activation> placement <device> : !qrt.buffer
  %b = qrt.buffer size 1024 align 256 class <activation> placement <device> : !qrt.buffer
  // expected-error@+1 {{'qrt.copy' op 'dst' range of 1024 bytes at offset 512 exceeds its buffer of 1024 bytes}}
  qrt.copy %a[0], %b[512], bytes 1024
  return
}

// -----

func.func @copy_zero_bytes() {
  %a = qrt.buffer size 4096 align 256 class <activation> placement <device> : !qrt.buffer
  // expected-error@+1 {{'qrt.copy' op 'bytes' must be positive, got 0}}
  qrt.copy %a[0], %a[1024], bytes 0
  return
}

// -----

func.func @prefetch_device_buffer() {
  %a = qrt.buffer size 4096 align 256 class <weight> placement <device> : !qrt.buffer
  // expected-error@+1 {{'qrt.prefetch' op 'buffer' must have placement <paged>, got <device>}}
  qrt.prefetch %a
  return
}

// -----

func.func @evict_pinned_buffer() {
  %a = qrt.buffer size 4096 align 256 class <io> placement <host_pinned> : !qrt.buffer
  // expected-error@+1 {{'qrt.evict' op 'buffer' must have placement <paged>, got <host_pinned>}}
  qrt.evict %a
  return
}

// -----

func.func @launch_unknown_kernel() {
  %a = qrt.buffer size 4096 align 256 class <activation> placement <device> : !qrt.buffer
  // expected-error@+1 {{'qrt.launch' op 'kernel' references an undefined symbol @missing}}
  qrt.launch @missing(%a) grid [1, 1, 1] block [32, 1, 1]
  return
}

// -----

func.func @not_a_kernel() {
  return
}
func.func @launch_non_kernel_symbol() {
  // expected-error@+1 {{'qrt.launch' op 'kernel' @not_a_kernel must be a 'qrt.kernel', got 'func.func'}}
  qrt.launch @not_a_kernel() grid [1, 1, 1] block [32, 1, 1]
  return
}

// -----

qrt.kernel @k template "silu_fwd" params {}
func.func @launch_grid_rank() {
  // expected-error@+1 {{'qrt.launch' op 'grid' must have 3 entries (x, y, z), got 2}}
  qrt.launch @k() grid [1, 1] block [32, 1, 1]
  return
}

// -----

qrt.kernel @k template "silu_fwd" params {}
func.func @launch_grid_zero() {
  // expected-error@+1 {{'qrt.launch' op 'grid' x must be positive, got 0}}
  qrt.launch @k() grid [0, 1, 1] block [32, 1, 1]
  return
}

// -----

qrt.kernel @k template "silu_fwd" params {}
func.func @launch_too_many_threads() {
  // expected-error@+1 {{'qrt.launch' op 'block' must have at most 1024 threads, got 2048 (1024 x 2 x 1)}}
  qrt.launch @k() grid [1, 1, 1] block [1024, 2, 1]
  return
}

// -----

qrt.kernel @k template "silu_fwd" params {}
func.func @launch_too_much_smem() {
  // expected-error@+1 {{'qrt.launch' op 'smem' must be in [0, 232448] bytes, got 300000}}
  qrt.launch @k() grid [1, 1, 1] block [128, 1, 1] smem 300000
  return
}

// -----

// expected-error@+1 {{'qrt.kernel' op 'template_name' must be a C++ identifier naming a template in kernels/, got ""}}
qrt.kernel @k template "" params {}

// -----

func.func @kernel_not_at_module_level() {
  // expected-error@+1 {{'qrt.kernel' op expects parent op 'builtin.module'}}
  qrt.kernel @k template "silu_fwd" params {}
  return
}

// -----

func.func @copy_overlapping() {
  %a = qrt.buffer size 4096 align 256 class <activation> placement <device> : !qrt.buffer
  // expected-error@+1 {{'qrt.copy' op copies between overlapping ranges of one buffer: 'src_offset' 0 and 'dst_offset' 512 must be at least 'bytes' (1024) apart}}
  qrt.copy %a[0], %a[512], bytes 1024
  return
}
