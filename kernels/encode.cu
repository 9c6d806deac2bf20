// Encode raw columns into the dense float32 matrix the forest reads (row-major, numeric first).
//
// One thread per output element, so consecutive threads write consecutive addresses.
// A categorical value is lookup[code] as a float, NaN when the code is -1 (null) or the batch
// dictionary entry is not in the training vocabulary (lookup == -1). Codes outside
// [-1, lookup_size) are reported through `invalid` and written as NaN.

typedef long long i64;

extern "C" __global__ void encode_columns(const unsigned long long* __restrict__ numeric,
                                          int n_numeric,
                                          const unsigned long long* __restrict__ codes,
                                          const unsigned long long* __restrict__ lookups,
                                          const i64* __restrict__ lookup_sizes, int n_categorical,
                                          i64 n_rows, float* __restrict__ out,
                                          int* __restrict__ invalid) {
  const int n_cols = n_numeric + n_categorical;
  const i64 total = n_rows * (i64)n_cols;
  for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
       e += (i64)gridDim.x * blockDim.x) {
    const i64 r = e / n_cols;
    const int c = (int)(e - r * n_cols);
    float v;
    if (c < n_numeric) {
      v = reinterpret_cast<const float*>(numeric[c])[r];
    } else {
      const int j = c - n_numeric;
      const int code = reinterpret_cast<const int*>(codes[j])[r];
      v = __int_as_float(0x7fc00000);  // NaN
      if (code >= 0 && (i64)code < lookup_sizes[j]) {
        const int id = reinterpret_cast<const int*>(lookups[j])[code];
        if (id >= 0) v = (float)id;
      } else if (code != -1) {
        atomicOr(invalid, 1);
      }
    }
    out[e] = v;
  }
}
