"""Run the package's CUDA sources on the CPU: a `CudaTarget` for the GPU launchers.

`emulated_target()` compiles a `.cu` file as host C++ against `cuda_emulator.h` (real threads
per CUDA thread, block barriers, shared memory, warp shuffles, atomics) and hands the launchers
NumPy in place of CuPy. The launchers then run unchanged: kernel choice, grid, shared-memory
size, argument packing and the kernels' own indexing are all exercised without a GPU.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kernels.device import CudaTarget, cuda_source

HEADER = Path(__file__).with_name("cuda_emulator.h")
_SHARED = re.compile(r"extern\s+__shared__\s+([A-Za-z_][\w ]*?)\s+(\w+)\s*\[\s*\]\s*;")
_C_KERNEL = re.compile(r'extern "C" __global__ void (\w+)')
_SCALARS = {
    np.dtype(np.int32): ctypes.c_int32,
    np.dtype(np.int64): ctypes.c_int64,
    np.dtype(np.uint32): ctypes.c_uint32,
    np.dtype(np.uint64): ctypes.c_uint64,
    np.dtype(np.float32): ctypes.c_float,
}


@functools.cache
def compiler() -> str | None:
    """A C++ compiler with the C++20 parts the emulator needs (barrier, bit_cast, atomic_ref),
    or None."""
    probe = "#include <atomic>\n#include <barrier>\n#include <bit>\nint main() { return 0; }\n"
    for name in ("g++", "clang++"):
        path = shutil.which(name)
        if path and subprocess.run(
            [path, "-std=c++20", "-fsyntax-only", "-x", "c++", "-"],
            input=probe, capture_output=True, text=True, check=False,
        ).returncode == 0:  # fmt: skip
            return path
    return None


def emulated_target(sm_count: int = 2) -> CudaTarget:
    """A target of `sm_count` emulated multiprocessors (few SMs reach the large-batch kernels
    with few rows)."""
    return CudaTarget(
        name=f"emulated:{sm_count}",
        xp=np,
        sm_count=sm_count,
        module=lambda source, names: EmulatedModule.build(source, tuple(names)),
        address=lambda array: array.ctypes.data,
        to_host=lambda array: array,
    )


class EmulatedKernel:
    """Called like a CuPy RawKernel: `kernel(grid, block, args, shared_mem=...)`."""

    def __init__(self, entry: Any) -> None:
        self._entry = entry

    def __call__(
        self, grid: tuple[int], block: tuple[int], args: Sequence[Any], shared_mem: int = 0
    ) -> None:
        values = [_c_value(arg) for arg in args]
        pointers = (ctypes.c_void_p * max(1, len(values)))(
            *(ctypes.cast(ctypes.byref(v), ctypes.c_void_p) for v in values)
        )
        self._entry(int(grid[0]), int(block[0]), ctypes.c_size_t(shared_mem), pointers)


class EmulatedModule:
    """One `.cu` source compiled with launch entry points for the requested kernels."""

    def __init__(self, library: ctypes.CDLL, names: tuple[str, ...]) -> None:
        self._library = library
        self._names = names

    @staticmethod
    @functools.cache
    def build(source: str, names: tuple[str, ...]) -> EmulatedModule:
        kernel_names = names or tuple(_C_KERNEL.findall(_code(source)))
        text = _translation_unit(source, kernel_names)
        digest = hashlib.sha256(text.encode() + HEADER.read_bytes()).hexdigest()[:16]
        folder = Path(tempfile.gettempdir()) / "tidewater-cuda-emulator"
        folder.mkdir(exist_ok=True)
        library = folder / f"{Path(source).stem}-{digest}.so"
        if not library.exists():  # built once per source text; concurrent builds race safely
            cpp = folder / f"{library.stem}.{os.getpid()}.cpp"
            cpp.write_text(text)
            partial = folder / f"{library.stem}.{os.getpid()}.so.partial"
            built = subprocess.run(
                [compiler() or "g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread",
                 "-Wno-unknown-pragmas", f"-I{HEADER.parent}", str(cpp), "-o", str(partial)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if built.returncode:
                raise RuntimeError(f"emulated build of {source} failed:\n{built.stderr}")
            partial.replace(library)
            cpp.unlink()
        return EmulatedModule(ctypes.CDLL(str(library)), kernel_names)

    def get_function(self, name: str) -> EmulatedKernel:
        entry = getattr(self._library, f"emulated_launch_{self._names.index(name)}")
        entry.restype = None
        entry.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_size_t, ctypes.c_void_p]
        return EmulatedKernel(entry)


def _code(source: str) -> str:
    return cuda_source(source)


def _translation_unit(source: str, names: Sequence[str]) -> str:
    """The CUDA source as host C++ (dynamic shared memory made a pointer into the block's
    buffer) plus one `extern "C"` launch entry per kernel name expression."""
    body = _SHARED.sub(r"\1* \2 = emu::shared_memory<\1>();", _code(source))
    entries = "\n".join(
        f'extern "C" void emulated_launch_{i}(unsigned grid, unsigned block, size_t shared,'
        f" void** args) {{ emu::launch(&{name}, grid, block, shared, args); }}"
        for i, name in enumerate(names)
    )
    return f'#include "cuda_emulator.h"\n{body}\n{entries}\n'


def _c_value(arg: Any) -> Any:
    """The ctypes object holding a launch argument: an array's address or a scalar's value."""
    if isinstance(arg, np.ndarray):
        if not arg.flags.c_contiguous:
            raise ValueError("kernel array arguments must be C-contiguous")
        return ctypes.c_void_p(arg.ctypes.data)
    if isinstance(arg, np.generic) and arg.dtype in _SCALARS:
        return _SCALARS[arg.dtype](arg.item())
    raise TypeError(f"unsupported kernel argument {type(arg).__name__}: pass NumPy arrays/scalars")
