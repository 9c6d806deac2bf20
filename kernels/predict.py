"""`predict`: margins or probabilities of a compiled forest on the CPU twin or the GPU."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from kernels.device import is_cupy_array, resolve
from kernels.forest_cpu import predict_margin_cpu
from kernels.forest_model import Forest

Output = Literal["margin", "probability"]


def predict(forest: Forest, X: Any, device: str = "auto", output: Output = "margin") -> Any:
    """Predictions of `forest` for rows `X` (float32 (n_rows, n_features), NaN = missing).

    `device`: "cpu", "gpu", or "auto" (the GPU for CuPy input, or for NumPy input when a CUDA
    device is usable; else the CPU). `output`: "margin" (raw sum of trees plus base margin) or
    "probability" (sigmoid of the margin for logistic objectives, the margin itself for
    reg:squarederror). The result is a float32 vector of the same array library as `X`.
    """
    if output not in ("margin", "probability"):
        raise ValueError(f"output must be 'margin' or 'probability', got {output!r}")
    _check_shape(forest, X)
    backend = resolve(device, X, prefer_gpu=True)
    if backend == "gpu":
        from kernels.forest_gpu import predict_margin_gpu

        margin = predict_margin_gpu(forest, X)
        if output == "probability" and forest.is_logistic:
            margin = _sigmoid(margin)
        return margin if is_cupy_array(X) else margin.get()
    margin = predict_margin_cpu(forest, np.ascontiguousarray(X, dtype=np.float32))
    if output == "probability" and forest.is_logistic:
        margin = _sigmoid(margin)
    return margin


def _check_shape(forest: Forest, X: Any) -> None:
    shape = getattr(X, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(f"X must be a 2-D array (n_rows, {forest.n_features}), got shape {shape}")
    if shape[1] != forest.n_features:
        raise ValueError(
            f"X has {shape[1]} features but the forest was trained on {forest.n_features}"
        )


def _sigmoid(margin: Any) -> Any:
    """1 / (1 + exp(-m)) in float32 (NumPy or CuPy)."""
    one = margin.dtype.type(1)
    return one / (one + _xp(margin).exp(-margin))


def _xp(a: Any) -> Any:
    if is_cupy_array(a):
        import cupy

        return cupy
    return np
