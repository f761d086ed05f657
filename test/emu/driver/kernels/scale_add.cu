// The source of CudaBackendTest.cpp's hand-lowered PTX kernel `scale_add`,
// y[i] = 2 * x[i] + y[i] for i < 256, which the emulated driver runs in its
// place (the GPU tests under label emu).
extern "C" __global__ void scale_add(const float *x, float *y) {
  unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= 255)
    y[i] = fmaf(x[i], 2.0f, y[i]);
}
