// mergec radix select: one histogram pass over 8 bits of a 32-bit key per element of an
// f32 buffer, for top-k cut points and quantiles (codegen::cuda::select drives the
// passes: 4 of them find a key's 32 bits from the top digit down). Needs prelude.cuh.
//
// Keys (`kind`):
//   0: the magnitude key mg_mk(x[i]) (top-k by |x|, NaN largest);
//   1: the total-order key mg_total_key(x[i]) (order statistics, quantiles);
//   2: the index i itself, counting only elements whose magnitude key equals `tie`
//      (the index cut that breaks ties at the k-th largest magnitude; n < 2^32).
// An element counts when (key & prefix_mask) == prefix (the digits already chosen); it
// adds 1 to bin (key >> shift) & 255. Each block counts into a shared-memory histogram
// with atomics, then adds its non-zero bins to `hist` (256 counters, zeroed by the caller).

#define MG_SELECT_THREADS 256

extern "C" __global__ void __launch_bounds__(MG_SELECT_THREADS) mergec_radix_hist(
    const float* __restrict__ x, mg_u64 n, mg_u32 kind, mg_u32 tie, mg_u32 prefix,
    mg_u32 prefix_mask, mg_u32 shift, mg_u32* __restrict__ hist) {
    __shared__ mg_u32 bins[256];
    for (unsigned b = threadIdx.x; b < 256u; b += blockDim.x) bins[b] = 0u;
    __syncthreads();
    const mg_u64 stride = (mg_u64)gridDim.x * blockDim.x;
    for (mg_u64 i = (mg_u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float v = x[i];
        mg_u32 key;
        if (kind == 0u) {
            key = mg_mk(v);
        } else if (kind == 1u) {
            key = mg_total_key(v);
        } else {
            if (mg_mk(v) != tie) continue;
            key = (mg_u32)i;
        }
        if ((key & prefix_mask) == prefix) atomicAdd(&bins[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    for (unsigned b = threadIdx.x; b < 256u; b += blockDim.x) {
        if (bins[b] != 0u) atomicAdd(&hist[b], bins[b]);
    }
}
