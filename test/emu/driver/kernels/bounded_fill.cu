// A kernel with __launch_bounds__, for EmulatedDriverTest: y[i] = i for the
// block's threads, through shared memory.
extern "C" __global__ void __launch_bounds__(64) bounded_fill(float *y) {
  __shared__ float staged[64];
  staged[threadIdx.x] = float(threadIdx.x);
  __syncthreads();
  y[threadIdx.x] = staged[63 - threadIdx.x];
}
