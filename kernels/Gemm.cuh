// placeholder
#ifndef QLORACC_KERNELS_GEMM_CUH
#define QLORACC_KERNELS_GEMM_CUH
#endif
