// REQUIRES: nvrtc
// RUN: qlora-opt %s -split-input-file -verify-diagnostics --qrt-codegen-cuda
// RUN: echo 'module {}' | not qlora-opt --qrt-codegen-cuda=archs=compute_90 2>&1 | FileCheck %s --check-prefix=ARCH
// RUN: echo 'qrt.kernel @fill_0 template "fill" params {n = 4 : i64, value = 1.0 : f64}' \
// RUN:   | not qlora-opt --qrt-codegen-cuda=activation-type=f16 2>&1 | FileCheck %s --check-prefix=F16

// ARCH: error: --qrt-codegen-cuda: archs must be sm_NN CUBIN targets (PTX comes with ptx=true), found 'compute_90'
// F16: error: 'qrt.kernel' op @fill_0: kernel 'fill': activation type must be 'f32' or 'bf16', found 'f16'

// A template kernels/ does not know.
// expected-error@+1 {{@conv2d_0: no CUDA kernel for template 'conv2d' in kernels/}}
qrt.kernel @conv2d_0 template "conv2d" params {n = 8 : i64}

// -----

// expected-error@+1 {{@attention_fwd_0: kernel 'attention_fwd': missing integer parameter 'batch'}}
qrt.kernel @attention_fwd_0 template "attention_fwd" params {}

// -----

// expected-error@+1 {{@add_0: kernel 'add': missing integer parameter 'n'}}
qrt.kernel @add_0 template "add" params {}
