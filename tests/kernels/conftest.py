"""Fixtures shared by the kernels tests: the CPU/GPU parametrization and the test helpers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from kernels import gpu_available


def _register_helpers(*names: str) -> None:
    # The suite runs with --import-mode=importlib, where test folders are not on sys.path;
    # registering the helper modules lets test modules `import kernels_testlib` by name.
    for name in names:
        if name in sys.modules:
            continue
        path = Path(__file__).with_name(f"{name}.py")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


_register_helpers("kernels_testlib", "cuda_emulator")


@pytest.fixture(
    scope="session",
    params=[pytest.param("cpu"), pytest.param("gpu", marks=pytest.mark.gpu)],
)
def device(request: pytest.FixtureRequest) -> str:
    """Each backend in turn; the GPU one is skipped when no CUDA device is usable."""
    if request.param == "gpu" and not gpu_available():
        pytest.skip("no usable CUDA device (cupy missing, no driver or no GPU)")
    return request.param
