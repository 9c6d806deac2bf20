// Per-feature histograms of a float32 row-major matrix over fixed bin edges.
//
// counts is (n_features, n_slots) with n_slots = n_bins_max + 1: a value's bin is the number of
// its feature's edges <= x, NaN goes to the last slot. With PRIVATE, each block counts into
// shared memory first (far fewer global atomics); the caller enables it when the table fits.

typedef long long i64;

__device__ __forceinline__ int hist_slot(float x, const float* __restrict__ edges, i64 lo,
                                         i64 hi, int nan_slot) {
  if (x != x) return nan_slot;
  i64 base = lo;
  i64 n = hi - lo;
  while (n > 0) {
    const i64 half = n >> 1;
    if (edges[base + half] <= x) {
      base += half + 1;
      n -= half + 1;
    } else {
      n = half;
    }
  }
  return (int)(base - lo);
}

template <bool PRIVATE>
__global__ void histogram_counts(const float* __restrict__ X, i64 n_rows, int n_features,
                                 const float* __restrict__ edges,
                                 const i64* __restrict__ edge_offsets, int n_slots,
                                 unsigned long long* __restrict__ counts) {
  extern __shared__ unsigned int local[];
  const int table = n_features * n_slots;
  if (PRIVATE) {
    for (int i = threadIdx.x; i < table; i += blockDim.x) local[i] = 0u;
    __syncthreads();
  }
  const i64 total = n_rows * (i64)n_features;
  for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
       e += (i64)gridDim.x * blockDim.x) {
    const int f = (int)(e % n_features);
    const int slot = hist_slot(X[e], edges, edge_offsets[f], edge_offsets[f + 1], n_slots - 1);
    if (PRIVATE) {
      atomicAdd(local + f * n_slots + slot, 1u);
    } else {
      atomicAdd(counts + (i64)f * n_slots + slot, 1ull);
    }
  }
  if (PRIVATE) {
    __syncthreads();
    for (int i = threadIdx.x; i < table; i += blockDim.x) {
      if (local[i]) atomicAdd(counts + i, (unsigned long long)local[i]);
    }
  }
}

#ifdef HISTOGRAM_INSTANTIATE_ALL
template __global__ void histogram_counts<true>(const float*, i64, int, const float*, const i64*,
                                                int, unsigned long long*);
template __global__ void histogram_counts<false>(const float*, i64, int, const float*,
                                                 const i64*, int, unsigned long long*);
#endif
