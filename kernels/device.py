"""Device detection and dispatch: which backend ("cpu" or "gpu") runs a kernel."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

Device = Literal["auto", "cpu", "gpu"]
Backend = Literal["cpu", "gpu"]


@functools.cache
def gpu_available() -> bool:
    """True when CuPy is installed and a CUDA device accepts an allocation (cached)."""
    try:
        import cupy

        probe = cupy.zeros(1, dtype=cupy.float32)
        probe += 1
        cupy.cuda.runtime.deviceSynchronize()
        return float(probe[0]) == 1.0
    except Exception:
        # No cupy, no driver, no device, driver too old: all mean "no usable GPU".
        return False


def is_cupy_array(x: Any) -> bool:
    """True when `x` is a CuPy ndarray (without importing cupy if it was never imported)."""
    return type(x).__module__.startswith("cupy") and hasattr(x, "__cuda_array_interface__")


def resolve(device: str, *arrays: Any, prefer_gpu: bool = False) -> Backend:
    """The backend for `device` given the inputs.

    "cpu"/"gpu" force a backend ("gpu" raises when no device is usable). "auto" picks the GPU
    when any input is a CuPy array, else the GPU only if `prefer_gpu` and a device is usable,
    else the CPU.
    """
    if device == "cpu":
        if any(is_cupy_array(a) for a in arrays):
            raise ValueError("device='cpu' was requested but an input is a CuPy (GPU) array")
        return "cpu"
    if device == "gpu":
        require_gpu()
        return "gpu"
    if device != "auto":
        raise ValueError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}")
    if any(is_cupy_array(a) for a in arrays):
        return "gpu"
    if prefer_gpu and gpu_available():
        return "gpu"
    return "cpu"


def require_gpu() -> None:
    """Raise RuntimeError when no CUDA device is usable through CuPy."""
    if not gpu_available():
        raise RuntimeError(
            "device='gpu' was requested but no CUDA device is usable "
            "(cupy missing, no driver, or no device); use device='cpu' or 'auto'"
        )


def cuda_source(name: str) -> str:
    """The text of the CUDA source `name` shipped in this package."""
    return resources.files("kernels").joinpath(name).read_text(encoding="utf-8")


@functools.cache
def raw_module(name: str, options: tuple[str, ...] = (), name_expressions: tuple[str, ...] = ()):
    """The compiled CuPy RawModule for the package's CUDA source `name` (built once per options)."""
    import cupy

    module = cupy.RawModule(
        code=cuda_source(name),
        options=("--std=c++17", *options),
        name_expressions=name_expressions or None,
    )
    module.compile()
    return module


@functools.cache
def device_attributes(device_id: int | None = None) -> dict[str, int]:
    """Attributes of the current (or given) CUDA device, e.g. MultiProcessorCount."""
    import cupy

    dev = cupy.cuda.Device(device_id) if device_id is not None else cupy.cuda.Device()
    return dict(dev.attributes)


@dataclass(frozen=True)
class CudaTarget:
    """What the GPU launchers run their kernels on: array module, device shape, compiled code.

    Production launches go to the current CuPy device (`cuda_target()`); the kernel tests hand
    the same launchers a CPU emulation of the CUDA execution model instead, so the launch code
    and the `.cu` sources are exercised even on machines without a GPU."""

    name: str  # also the cache key of a model's arrays on this target
    xp: Any  # cupy, or numpy for the emulator
    sm_count: int
    module: Callable[[str, tuple[str, ...]], Any]  # (source, name expressions) -> .get_function
    address: Callable[[Any], int]  # an array's device address
    to_host: Callable[[Any], Any]


def cuda_target() -> CudaTarget:
    """The current CuPy device."""
    import cupy

    device_id = cupy.cuda.Device().id
    return CudaTarget(
        name=f"cuda:{device_id}",
        xp=cupy,
        sm_count=device_attributes(device_id)["MultiProcessorCount"],
        module=lambda source, names: raw_module(source, name_expressions=names),
        address=lambda array: array.data.ptr,
        to_host=lambda array: array.get(),
    )
