// Forest inference on CUDA: raw margins of a compiled forest (kernels/forest_model.py layout).
//
// Node record (uint4): x = threshold bits (NaN for a leaf), y = feature | default-right << 31,
// z = local left child (right = left + 1; a leaf points to itself), w = leaf value bits.
// Every tree is walked in at most tree_depths[t] branch-free steps; forest_rows stops a tree
// early when every row of the warp rests on a leaf.
//
// forest_rows: each thread owns ROWS rows and adds the trees in model order, so margins are
//   bit-identical to XGBoost's CPU predictor. With SHARED, consecutive trees are staged chunk by
//   chunk (chunk_trees) into shared memory; otherwise nodes are read through the read-only cache.
// forest_tree_parallel: one warp per row, lanes split the trees; for batches too small to fill
//   the device. The summation order differs from XGBoost's (agreement to ~1e-6 relative).

typedef long long i64;

__device__ __forceinline__ int forest_step(uint4 nd, const float* __restrict__ row) {
  const float x = row[nd.y & 0x7fffffffu];
  const bool right = (x >= __uint_as_float(nd.x)) | ((x != x) & ((nd.y >> 31) != 0u));
  return (int)nd.z + (int)right;
}

template <int ROWS, bool SHARED, int FIXED_DEPTH>
__global__ void forest_rows(const float* __restrict__ X, i64 n_rows, int n_features,
                            const uint4* __restrict__ nodes, const i64* __restrict__ tree_offsets,
                            const int* __restrict__ tree_depths, const int* __restrict__ chunk_trees,
                            int n_chunks, float base_margin, float* __restrict__ out) {
  extern __shared__ uint4 staged[];
  const i64 first = (i64)blockIdx.x * blockDim.x * ROWS + threadIdx.x;
  const float* row[ROWS];
  float acc[ROWS];
#pragma unroll
  for (int k = 0; k < ROWS; ++k) {
    i64 r = first + (i64)k * blockDim.x;
    // Rows past the end walk the last row (never written) so that no thread leaves early and
    // every thread reaches the block barriers.
    r = r < n_rows ? r : n_rows - 1;
    row[k] = X + r * (i64)n_features;
    acc[k] = base_margin;
  }
  for (int c = 0; c < n_chunks; ++c) {
    const int t0 = chunk_trees[c];
    const int t1 = chunk_trees[c + 1];
    const uint4* base = nodes;
    i64 node0 = 0;
    if (SHARED) {
      node0 = tree_offsets[t0];
      const int count = (int)(tree_offsets[t1] - node0);
      __syncthreads();
      for (int i = threadIdx.x; i < count; i += blockDim.x) staged[i] = nodes[node0 + i];
      __syncthreads();
      base = staged;
    }
    for (int t = t0; t < t1; ++t) {
      const uint4* tree = base + (tree_offsets[t] - node0);
      const int depth = FIXED_DEPTH > 0 ? FIXED_DEPTH : tree_depths[t];
      int idx[ROWS];
#pragma unroll
      for (int k = 0; k < ROWS; ++k) idx[k] = 0;
      for (int d = 0; d < depth; ++d) {
        bool moved = false;
#pragma unroll
        for (int k = 0; k < ROWS; ++k) {
          const int next = forest_step(tree[idx[k]], row[k]);
          moved |= next != idx[k];  // only a leaf points to itself
          idx[k] = next;
        }
        // Rows of an unbalanced tree reach leaves at different depths: the warp stops once
        // all its rows rest on leaves (every thread runs the same steps, so the vote is
        // uniform and no thread skips a barrier).
        if (!__any_sync(0xffffffffu, moved)) break;
      }
#pragma unroll
      for (int k = 0; k < ROWS; ++k) acc[k] += __uint_as_float(tree[idx[k]].w);
    }
  }
#pragma unroll
  for (int k = 0; k < ROWS; ++k) {
    const i64 r = first + (i64)k * blockDim.x;
    if (r < n_rows) out[r] = acc[k];
  }
}

__global__ void forest_tree_parallel(const float* __restrict__ X, i64 n_rows, int n_features,
                                     const uint4* __restrict__ nodes,
                                     const i64* __restrict__ tree_offsets,
                                     const int* __restrict__ tree_depths, int n_trees,
                                     float base_margin, float* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const i64 warp = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const i64 n_warps = ((i64)gridDim.x * blockDim.x) >> 5;
  for (i64 r = warp; r < n_rows; r += n_warps) {
    const float* row = X + r * (i64)n_features;
    float part = 0.0f;
    for (int t = lane; t < n_trees; t += 32) {
      const uint4* tree = nodes + tree_offsets[t];
      int idx = 0;
      for (int d = tree_depths[t]; d > 0; --d) idx = forest_step(__ldg(tree + idx), row);
      part += __uint_as_float(__ldg(tree + idx).w);
    }
#pragma unroll
    for (int s = 16; s > 0; s >>= 1) part += __shfl_down_sync(0xffffffffu, part, s);
    if (lane == 0) out[r] = base_margin + part;
  }
}

#ifdef FOREST_INSTANTIATE_ALL
// Lets `nvcc -ptx -DFOREST_INSTANTIATE_ALL` check every variant the launcher may request.
#define FOREST_ROWS_VARIANT(R, S, D)                                                         \
  template __global__ void forest_rows<R, S, D>(const float*, i64, int, const uint4*,        \
                                                const i64*, const int*, const int*, int, float, \
                                                float*);
FOREST_ROWS_VARIANT(1, false, 0)
FOREST_ROWS_VARIANT(2, false, 0)
FOREST_ROWS_VARIANT(4, false, 0)
FOREST_ROWS_VARIANT(1, true, 0)
FOREST_ROWS_VARIANT(2, true, 0)
FOREST_ROWS_VARIANT(4, true, 0)
FOREST_ROWS_VARIANT(4, true, 6)
FOREST_ROWS_VARIANT(4, true, 8)
FOREST_ROWS_VARIANT(4, false, 10)
#endif
