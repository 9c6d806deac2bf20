"""Fixtures shared by the kernels tests: the CPU/GPU parametrization and the test helpers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from kernels import gpu_available


def _register_testlib() -> None:
    # The suite runs with --import-mode=importlib, where test folders are not on sys.path;
    # registering the helper module lets test modules `import kernels_testlib` by name.
    if "kernels_testlib" in sys.modules:
        return
    path = Path(__file__).with_name("kernels_testlib.py")
    spec = importlib.util.spec_from_file_location("kernels_testlib", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kernels_testlib"] = module
    spec.loader.exec_module(module)


_register_testlib()


@pytest.fixture(
    scope="session",
    params=[pytest.param("cpu"), pytest.param("gpu", marks=pytest.mark.gpu)],
)
def device(request: pytest.FixtureRequest) -> str:
    """Each backend in turn; the GPU one is skipped when no CUDA device is usable."""
    if request.param == "gpu" and not gpu_available():
        pytest.skip("no usable CUDA device (cupy missing, no driver or no GPU)")
    return request.param
