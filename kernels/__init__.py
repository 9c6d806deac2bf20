"""Pure array compute for tidewater: forest inference, encoding and histograms on CPU or GPU.

CUDA kernels (`*.cu`, launched through CuPy) each have a Numba CPU twin; CuPy is imported only
when a GPU path is used, so this package imports without it.
"""

from kernels.device import gpu_available
from kernels.encode import build_lookup, encode
from kernels.forest_compiler import UnsupportedModelError, compile_forest
from kernels.forest_model import Forest, ForestFormatError
from kernels.histogram import category_edges, histogram, quantile_edges
from kernels.predict import predict

__all__ = [
    "Forest",
    "ForestFormatError",
    "UnsupportedModelError",
    "build_lookup",
    "category_edges",
    "compile_forest",
    "encode",
    "gpu_available",
    "histogram",
    "predict",
    "quantile_edges",
]
