"""The GPU check's bundle and entry point, on a machine without a GPU: the wheels are for the
device (CPython 3.12, manylinux x86-64), each part fits one device call with the working tree,
and `gpu-check` stops at once with a clear message where no GPU is visible."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename

from benchmarks import gpu_bundle
from benchmarks.gpu_bundle import CALL_LIMIT, MIB, pack, plan, tree_bytes, wheel_problem
from benchmarks.gpu_check import NO_GPU

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / gpu_bundle.BUNDLE


def _no_gpu_here() -> None:
    import importlib.util

    if importlib.util.find_spec("cupy") is None:  # cheaper than importing the kernels
        return
    from kernels import gpu_available

    if gpu_available():
        pytest.skip("a GPU is visible: the no-GPU path cannot be checked here")


def _gpu_check(*args: str, path: str | None = None) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PATH": path if path is not None else os.environ.get("PATH", "")}
    env.pop("OUT", None)
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out, time.monotonic() - started


def test_gpu_check_stops_at_once_without_a_gpu(tmp_path):
    _no_gpu_here()
    out, seconds = _gpu_check("run", path=str(tmp_path))  # no nvidia-smi on this PATH
    assert out.returncode == NO_GPU, out.stderr
    assert "no usable CUDA device here" in out.stderr
    assert "nvidia-smi" in out.stderr
    assert seconds < 30


def test_gpu_check_needs_a_device_cupy_can_use_not_only_a_driver(tmp_path):
    _no_gpu_here()
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 580.159.04, 81559 MiB, 9.0'\n")
    smi.chmod(0o755)
    out, seconds = _gpu_check("run", path=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert out.returncode == NO_GPU, out.stderr
    assert "nvidia-smi lists NVIDIA H100 80GB HBM3, but CuPy cannot use it" in out.stderr
    assert seconds < 60


def test_make_gpu_check_fails_where_no_gpu_is_visible():
    _no_gpu_here()
    if shutil.which("make") is None:
        pytest.skip("no make")
    out = subprocess.run(
        ["make", "--no-print-directory", "gpu-check", f"GPU_PYTHON={sys.executable}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "no usable CUDA device here" in out.stderr


def test_wheel_tags_accepted_are_the_devices():
    good = [
        "numba-0.68.1-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        "deltalake-1.6.6-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "xgboost-3.2.0-py3-none-manylinux_2_28_x86_64.whl",
        "prefect-3.9.1-py3-none-any.whl",
    ]
    bad = [
        "numba-0.68.1-cp311-cp311-manylinux_2_28_x86_64.whl",
        "numba-0.68.1-cp312-cp312-manylinux_2_28_aarch64.whl",
        "numba-0.68.1-cp312-cp312-win_amd64.whl",
        "numba-0.68.1-cp312-cp312-macosx_11_0_arm64.whl",
        "deltalake-1.6.6-cp313-abi3-manylinux_2_17_x86_64.whl",
        "pandas-2.3.3-cp312-cp312-musllinux_1_2_x86_64.whl",
    ]
    assert [wheel_problem(name) for name in good] == [None] * len(good)
    assert all(wheel_problem(name) for name in bad)


def test_pack_fills_parts_and_cuts_only_what_does_not_fit(tmp_path):
    sizes = {"big": 250, "a": 60, "b": 50, "c": 30, "d": 10}
    files = []
    for name, size in sizes.items():
        path = tmp_path / f"{name}.whl"
        path.write_bytes(os.urandom(size))
        files.append((name, path))
    parts = pack(files, capacity=100, prefix="part")
    assert len(parts) == 4  # ceil(400 / 100): the fewest possible
    assert all(sum(p["bytes"] for p in part["pieces"]) <= 100 for part in parts)
    for name, path in files:  # the pieces, in order, are the file
        pieces = [p for part in parts for p in part["pieces"] if p["name"] == name]
        data = path.read_bytes()
        joined = b"".join(data[p["offset"] : p["offset"] + p["bytes"]] for p in pieces)
        assert joined == data
        assert [p["offset"] for p in pieces] == sorted(p["offset"] for p in pieces)


def test_the_bundle_plan_follows_the_lock_and_leaves_the_devices_stack_alone():
    wheels = {w["name"]: w for w in plan(ROOT)}
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"]}
    for name in ("numba", "llvmlite", "xgboost", "hypothesis", "pytest", "dask", "distributed",
                 "dask-cuda", "prefect", "deltalake", "pandera", "pandas"):  # fmt: skip
        assert wheels[name]["version"] == locked[name], name
    for name in ("numpy", "cupy-cuda13x", "cuda-bindings", "nvidia-nccl-cu12", "playwright",
                 "ruff", "evidently"):  # fmt: skip
        assert name not in wheels, name
    # Needed (the device has no copy, or one our pins exclude) vs. fallback (it has one).
    assert wheels["xgboost"]["group"] == wheels["deltalake"]["group"] == "part"
    assert wheels["pandas"]["group"] == "part"
    assert wheels["numba"]["group"] == wheels["pyarrow"]["group"] == "fallback"
    assert wheels["dask"]["version"] == wheels["distributed"]["version"]
    requirements = gpu_bundle.device_requirements(ROOT)
    names = {gpu_bundle._requirement_name(r) for r in requirements}
    assert {"dask-cuda", "pytest", "hypothesis", "pandas", "numba"} <= names
    assert not names & {"xgboost", "evidently", "cupy-cuda13x", "playwright"}
    assert all("[cu13]" not in r for r in requirements)
    assert {w["name"] for w in plan(ROOT, xgboost="cpu")} - set(wheels) == {"xgboost-cpu"}


def test_the_built_bundle_fits_the_device():
    """Uses the bundle `make gpu-bundle` left here, if any (the slow test builds one)."""
    if not (BUNDLE / gpu_bundle.MANIFEST).is_file():
        pytest.skip("no bundle built here (make gpu-bundle)")
    check_bundle(BUNDLE)


def check_bundle(bundle: Path) -> None:
    manifest = json.loads((bundle / gpu_bundle.MANIFEST).read_text())
    tree = tree_bytes(ROOT)
    for wheel in manifest["wheels"]:
        assert wheel_problem(wheel["file"]) is None
        name, version, _, _ = parse_wheel_filename(wheel["file"])
        assert (name, str(version)) == (wheel["name"], wheel["version"])
        assert sum(p["bytes"] for p in wheel["pieces"]) == wheel["bytes"]
    for part in manifest["parts"]:
        carried = sum(f.stat().st_size for f in (bundle / part["name"]).iterdir())
        assert carried + tree < CALL_LIMIT, f"{part['name']}: {(carried + tree) / MIB:.1f} MiB"
        assert {f.name for f in (bundle / part["name"]).iterdir()} == {
            gpu_bundle.MANIFEST,
            *(f["file"] for f in part["files"]),
        }
    names = {w["name"] for w in manifest["wheels"]}
    assert {"numba", "llvmlite", "hypothesis", "pytest", "dask-cuda", "deltalake"} <= names
    assert not names & {"numpy", "cupy-cuda13x"}


@pytest.mark.slow
def test_build_the_bundle_and_install_it_as_the_device_would(tmp_path):
    """Downloads the wheels (PyPI), checks the parts, then installs them with no index into a
    venv layered over a stand-in for the device's Python 3.12 that has NumPy only (so every
    part and fallback part is needed) and imports the GPU path's modules from it."""
    # pyenv's shims run only its global version: ask pyenv for the path first.
    python312 = _pyenv_python("3.12") or shutil.which("python3.12")
    uv = ROOT / ".tools" / "bin" / "uv"
    if python312 is None or not uv.exists():
        pytest.skip("needs python3.12 and .tools/bin/uv (make env)")
    build = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_bundle"], cwd=ROOT, capture_output=True, text=True
    )
    assert build.returncode == 0, build.stderr[-2000:]
    check_bundle(BUNDLE)
    device = tmp_path / "device"
    subprocess.run([str(uv), "venv", "-q", "--python", python312, str(device)], check=True)
    subprocess.run(
        [str(uv), "pip", "install", "-q", "--python", str(device / "bin" / "python"),
         "numpy>=2.1,<3", "pip"],
        check=True,
    )  # fmt: skip
    out = subprocess.run(
        [str(device / "bin" / "python"), "-m", "benchmarks.gpu_check", "env"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    env_python = ROOT / ".gpu-env" / "bin" / "python"
    code = (
        "import flows.score, tasks.cluster, benchmarks.forest, benchmarks.scoring, xgboost, numba"
        f", pandas, numpy; assert numpy.__file__.startswith({str(device)!r}), numpy.__file__"
    )
    imported = subprocess.run([str(env_python), "-c", code], cwd=ROOT, capture_output=True)
    assert imported.returncode == 0, imported.stderr[-2000:]


def _pyenv_python(version: str) -> str | None:
    try:
        prefix = subprocess.run(
            ["pyenv", "prefix", version], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(prefix) / "bin" / f"python{version}"
    return str(path) if path.exists() else None


def _fake_bundle(root: Path) -> tuple[Path, dict[str, bytes]]:
    """A bundle of two wheels, one cut across two parts, laid out as `make gpu-bundle` does."""
    wheels = {"big-1.0-py3-none-any.whl": os.urandom(300), "small-1.0-py3-none-any.whl": b"x" * 50}
    bundle = root / "bundle"
    records: dict[str, dict] = {}
    parts = []
    big = wheels["big-1.0-py3-none-any.whl"]
    layout = [
        ("part-1", [("big-1.0-py3-none-any.whl", 0, big[:200])]),
        (
            "part-2",
            [("big-1.0-py3-none-any.whl", 200, big[200:]), ("small-1.0-py3-none-any.whl", 0, None)],
        ),
    ]
    for part, pieces in layout:
        (bundle / part).mkdir(parents=True)
        files = []
        for name, offset, chunk in pieces:
            chunk = wheels[name] if chunk is None else chunk
            whole = len(chunk) == len(wheels[name])
            file = name if whole else f"{name}.at{offset}"
            (bundle / part / file).write_bytes(chunk)
            entry = {
                "file": file,
                "bytes": len(chunk),
                "sha256": gpu_bundle.sha256(bundle / part / file),
            }
            files.append(entry)
            record = records.setdefault(
                name, {"name": name.split("-")[0], "file": name, "pieces": []}
            )
            record["pieces"].append({"part": part, **entry})
        parts.append({"name": part, "files": files, "bytes": sum(f["bytes"] for f in files)})
    for name, record in records.items():
        (root / name).write_bytes(wheels[name])
        record.update(bytes=len(wheels[name]), sha256=gpu_bundle.sha256(root / name))
    manifest = {"parts": parts, "wheels": list(records.values()), "requirements": []}
    for part in parts:
        (bundle / part["name"] / gpu_bundle.MANIFEST).write_text(json.dumps(manifest))
    return bundle, wheels


def test_parts_are_checked_kept_outside_the_checkout_and_joined(tmp_path, monkeypatch):
    from benchmarks import gpu_check

    bundle, wheels = _fake_bundle(tmp_path)
    monkeypatch.setattr(gpu_check, "STASH", tmp_path / "stash")
    install = gpu_check.main
    assert install(["install", "1", "--bundle", str(bundle)]) == 0
    assert (tmp_path / "stash" / "part-1").is_dir()
    # The checkout's copy is gone (a new working tree), the stash still has part-1.
    shutil.rmtree(bundle / "part-1")
    manifest, problem = gpu_check.check_parts(bundle)
    assert problem is None
    house, staged = gpu_check.stage_wheels(bundle, manifest)
    assert sorted(staged) == ["big", "small"]
    for name, data in wheels.items():
        assert (house / name).read_bytes() == data
    # A damaged piece is named, and the part counts as not carried.
    (bundle / "part-2" / "small-1.0-py3-none-any.whl").write_bytes(b"y" * 50)
    assert install(["install", "2", "--bundle", str(bundle)]) == 1
    manifest, problem = gpu_check.check_parts(bundle)
    assert problem and "part-2 (corrupt (small-1.0-py3-none-any.whl))" in problem
