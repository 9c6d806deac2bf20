"""Device detection and dispatch rules."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from kernels import gpu_available
from kernels.device import is_cupy_array, resolve


def test_gpu_available_is_a_cached_bool() -> None:
    assert gpu_available() in (True, False)
    assert gpu_available() is gpu_available()


def test_resolve() -> None:
    x = np.zeros(3)
    assert resolve("cpu", x) == "cpu"
    assert resolve("auto", x) == "cpu"
    assert resolve("auto", x, prefer_gpu=True) == ("gpu" if gpu_available() else "cpu")
    assert not is_cupy_array(x)
    with pytest.raises(ValueError, match="device"):
        resolve("tpu", x)


def test_forcing_gpu_without_device_is_a_clear_error() -> None:
    if gpu_available():
        pytest.skip("a GPU is usable here")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve("gpu", np.zeros(1))


def test_import_does_not_need_cupy() -> None:
    code = (
        "import sys; sys.modules['cupy'] = None\n"
        "import numpy as np, kernels\n"
        "assert kernels.gpu_available() is False\n"
        "assert kernels.encode([np.zeros(2)], []).shape == (2, 1)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
