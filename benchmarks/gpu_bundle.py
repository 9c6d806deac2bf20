"""Build the wheel bundle that the GPU check installs on a lent device (`make gpu-bundle`).

    python -m benchmarks.gpu_bundle                  # download, pack, write the manifest
    python -m benchmarks.gpu_bundle --xgboost cpu    # CPU-only XGBoost (a smaller bundle)
    python -m benchmarks.gpu_bundle --check          # re-check an existing bundle's limits

The device is bare: Python 3.12 with CuPy and NumPy (and the packages listed in DEVICE_HAS),
no package index, and each call carries at most 64 MiB together with the working tree. So the
cp312 manylinux x86-64 wheels of what the GPU tests and benchmarks need are fetched here with
pip's cross-platform download, at the versions uv.lock pins, and split into parts under
`.gpu-bundle/`: `part-N` (needed: the device lacks these, or has a version our pins exclude)
and `fallback-N` (the device has these; carried only when its version does not satisfy our
requirements, which `make gpu-check` says by name). A wheel larger than a part is cut into
chunks that the device joins and checks before installing. `manifest.json` (also copied
into every part) lists parts, wheels, chunks, sizes and sha256s, and the requirements the
device resolves against its own packages.

Standard library only at import time: `benchmarks.gpu_check` imports this on the device.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ".gpu-bundle"
MANIFEST = "manifest.json"
MIB = 1 << 20
CALL_LIMIT = 64 * MIB  # what one device call may carry: working tree + carried paths
MANIFEST_ROOM = 256 * 1024  # each part carries a copy of the manifest (~100 KiB)
HEADROOM = 2 * MIB  # the working tree may grow a little between bundling and the device call
PYTHON_VERSION = "3.12"
PLATFORMS = (  # pip matches manylinux_2_N exactly: list every N our wheels use
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
)
# Markers of the device's interpreter (uv.lock is universal: its markers are evaluated here).
DEVICE_MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
# Never carried: the device's own CUDA stack and array libraries are what we test against.
# (nvidia-nccl-cu12 is XGBoost's multi-GPU dependency; one GPU never loads it.)
DEVICE_RUNTIME = re.compile(r"^(numpy|cupy(-.*)?|cuda-bindings|cuda-toolkit|nvidia-(?!ml-py).*)$")
# Not needed by `pytest -m gpu` (collection included) nor the two benchmarks: lazily imported
# by the monitoring/report and S3 paths only; the browser tests skip without playwright.
NOT_ON_DEVICE = {"evidently", "s3fs", "playwright", "ruff"}
# Test tools from the dev group that the GPU check runs.
TEST_TOOLS = {"pytest", "pytest-timeout", "hypothesis"}
# Carried although the device has a copy: our pins exclude the likely version there
# (pandas < 3 for evidently/pandera; the device's image is newer).
ALWAYS_CARRY = {"pandas"}
# What the device's image holds (KINDS.md of the device tool, read 2026-11-17; versions
# unknown). Wheels of these go to fallback parts, carried only if the device's copy does not
# satisfy the requirements.
_DEVICE_IMAGE = """
    absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
    botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
    coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython
    diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic
    frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
    hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib
    jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator
    lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
    mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx
    ninja numba numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir onnxruntime onnxscript
    opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging
    pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf
    psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest
    pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
    pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
    scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools
    shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
    tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz
    torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers
    treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug
    wheel wrapt xarray xxhash yarl zipp"""
DEVICE_HAS = set(_DEVICE_IMAGE.split())


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST).read_text())


# --- what to carry -----------------------------------------------------------------------------


def _requirement_name(spec: str) -> str:
    return canonical(re.split(r"[\s\[<>=!~;(]", spec.strip(), maxsplit=1)[0])


def device_requirements(root: Path = ROOT, xgboost: str = "cuda") -> list[str]:
    """The top-level requirements the device resolves (pyproject's ranges, not exact pins, so
    that the device's own compatible packages are kept). XGBoost is not among them: it is
    installed on its own without its NCCL dependency."""
    project = tomllib.loads((root / "pyproject.toml").read_text())
    out = []
    for spec in project["project"]["dependencies"]:
        name = _requirement_name(spec)
        if name not in NOT_ON_DEVICE and name != "xgboost":
            out.append(spec)
    for spec in project["project"]["optional-dependencies"]["gpu"]:
        if _requirement_name(spec) == "dask-cuda":  # without [cu13]: the device has CUDA
            out.append(re.sub(r"\[[^\]]*\]", "", spec))
    for spec in project["dependency-groups"]["dev"]:
        if _requirement_name(spec) in TEST_TOOLS:
            out.append(spec)
    return out


@functools.cache
def _locked_packages(lock: Path) -> dict[str, dict]:
    return {canonical(p["name"]): p for p in tomllib.loads(lock.read_text())["package"]}


def lock_closure(root: Path, roots: list[str]) -> dict[str, str]:
    """{name: version} of `roots` and everything they need per uv.lock, on the device's
    interpreter, less the device's runtime (DEVICE_RUNTIME)."""
    from packaging.markers import Marker

    packages = _locked_packages(root / "uv.lock")
    env = {**DEVICE_MARKERS, "extra": ""}
    seen: set[tuple[str, tuple[str, ...]]] = set()
    stack = [(_requirement_name(r), tuple(re.findall(r"\[([^\]]*)\]", r)[:1])) for r in roots]
    while stack:
        name, extras = stack.pop()
        if DEVICE_RUNTIME.match(name) or (name, extras) in seen:
            continue
        seen.add((name, extras))
        package = packages[name]
        deps = list(package.get("dependencies", []))
        for extra in extras:
            for e in extra.split(","):
                deps += package.get("optional-dependencies", {}).get(e.strip(), [])
        for dep in deps:
            marker = dep.get("marker")
            if marker and not Marker(marker).evaluate(env):
                continue
            stack.append((canonical(dep["name"]), tuple(dep.get("extra", []))))
    return {name: packages[name]["version"] for name, _ in seen}


def plan(root: Path = ROOT, xgboost: str = "cuda") -> list[dict]:
    """[{name, version, group}] of the wheels to carry, group "part" or "fallback"."""
    requirements = device_requirements(root)
    pins = lock_closure(root, [*requirements, "xgboost"])
    if xgboost == "cpu":  # same release, built without CUDA (no GPU predictor)
        pins["xgboost-cpu"] = pins.pop("xgboost")
    wheels = []
    for name, version in sorted(pins.items()):
        group = "fallback" if name in DEVICE_HAS and name not in ALWAYS_CARRY else "part"
        wheels.append({"name": name, "version": version, "group": group})
    return wheels


# --- download and check -------------------------------------------------------------------------


def wheel_problem(filename: str) -> str | None:
    """Why `filename` cannot install on CPython 3.12 manylinux x86-64, or None."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        return str(exc)
    for tag in tags:
        interpreter_ok = tag.interpreter in ("cp312", "py3") or (
            tag.abi == "abi3"
            and re.fullmatch(r"cp3(\d+)", tag.interpreter) is not None
            and int(tag.interpreter[3:]) <= 12
        )
        abi_ok = tag.abi in ("cp312", "abi3", "none")
        platform_ok = tag.platform == "any" or re.fullmatch(
            r"manylinux(1|2010|2014|_2_\d+)_x86_64", tag.platform
        )
        if interpreter_ok and abi_ok and platform_ok:
            return None
    return f"{filename}: no cp312/abi3/py3 manylinux x86_64 tag"


def download(wheels: list[dict], dest: Path, pip: str) -> dict[str, Path]:
    """Fetch the pinned wheels into `dest` (once: present files are kept). {name: path}."""
    dest.mkdir(parents=True, exist_ok=True)

    def present() -> dict[str, Path]:
        from packaging.utils import canonicalize_name, parse_wheel_filename

        out = {}
        for path in dest.glob("*.whl"):
            name, version, _, _ = parse_wheel_filename(path.name)
            out[(canonicalize_name(name), str(version))] = path
        return out

    have = present()
    missing = [w for w in wheels if (w["name"], w["version"]) not in have]
    if missing:
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        command = [
            pip,
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            *platforms,
            "--python-version",
            PYTHON_VERSION,
            "--implementation",
            "cp",
            "--abi",
            "cp312",
            "--abi",
            "abi3",
            "--abi",
            "none",
            "--dest",
            str(dest),
            *(f"{w['name']}=={w['version']}" for w in missing),
        ]
        print(f"downloading {len(missing)} wheels ...", file=sys.stderr)
        # This machine's pip constraints cap unrelated packages; the lock's pins are exact.
        subprocess.run(command, check=True, env={**os.environ, "PIP_CONSTRAINT": ""})
        have = present()
    out = {}
    for w in wheels:
        path = have.get((w["name"], w["version"]))
        if path is None:
            raise SystemExit(f"no wheel for {w['name']}=={w['version']} was downloaded")
        out[w["name"]] = path
    return out


def tree_bytes(root: Path = ROOT) -> int:
    """Bytes of the working tree as a device call sends it: tracked files plus untracked files
    that git does not ignore (and shared/ inside the checkout, if any)."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout
    total = 0
    for rel in set(listing.decode().split("\0")) - {""}:
        path = root / rel
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


# --- packing ------------------------------------------------------------------------------------


def pack(files: list[tuple[str, Path]], capacity: int, prefix: str) -> list[dict]:
    """Lay `(name, wheel)` files end to end into parts of at most `capacity` bytes, cutting a
    wheel where a part is full (so the fewest parts). Returns the parts, each a list of pieces
    {wheel, name, offset, bytes, part}."""
    parts: list[list[dict]] = [[]]
    room = capacity
    for name, path in files:
        size, offset = path.stat().st_size, 0
        while offset < size:
            if room == 0:
                parts.append([])
                room = capacity
            take = min(room, size - offset)
            parts[-1].append({"wheel": path, "name": name, "offset": offset, "bytes": take})
            offset += take
            room -= take
    return [
        {"name": f"{prefix}-{i}", "pieces": pieces} for i, pieces in enumerate(parts, 1) if pieces
    ]


def build(args: argparse.Namespace) -> int:
    root = Path(args.root)
    bundle = root / BUNDLE
    wheels = plan(root, args.xgboost)
    paths = download(wheels, bundle / "wheels", args.pip)
    problems = [p for w in wheels if (p := wheel_problem(paths[w["name"]].name))]
    if problems:
        raise SystemExit("wheels that cannot install on the device:\n" + "\n".join(problems))
    tree = tree_bytes(root)
    capacity = CALL_LIMIT - tree - HEADROOM - MANIFEST_ROOM
    if capacity < 8 * MIB:
        raise SystemExit(f"the working tree ({tree / MIB:.1f} MiB) leaves no room for wheels")
    for old in bundle.glob("part-*"):
        shutil.rmtree(old)
    for old in bundle.glob("fallback-*"):
        shutil.rmtree(old)
    records = {w["name"]: {**w, "file": paths[w["name"]].name} for w in wheels}
    parts = []
    for group in ("part", "fallback"):
        # Largest first: the wheels a part must cut are few, and they lead the first parts.
        chosen = [(w["name"], paths[w["name"]]) for w in wheels if w["group"] == group]
        chosen.sort(key=lambda item: -item[1].stat().st_size)
        parts += pack(chosen, capacity, group)
    for part in parts:
        folder = bundle / part["name"]
        folder.mkdir()
        files = []
        for piece in part["pieces"]:
            record = records[piece["name"]]
            whole = piece["bytes"] == piece["wheel"].stat().st_size
            name = record["file"] if whole else f"{record['file']}.at{piece['offset']}"
            with open(piece["wheel"], "rb") as src, open(folder / name, "wb") as dst:
                src.seek(piece["offset"])
                dst.write(src.read(piece["bytes"]))
            entry = {"file": name, "bytes": piece["bytes"], "sha256": sha256(folder / name)}
            files.append(entry)
            record.setdefault("pieces", []).append({"part": part["name"], **entry})
        part["files"] = files
        part["bytes"] = sum(f["bytes"] for f in files)
        del part["pieces"]
    for name, record in records.items():
        path = paths[name]
        record.update(bytes=path.stat().st_size, sha256=sha256(path))
    manifest = {
        "python": PYTHON_VERSION,
        "platforms": list(PLATFORMS),
        "xgboost": args.xgboost,
        "requirements": device_requirements(root),
        "limit_bytes": CALL_LIMIT,
        "tree_bytes_at_build": tree,
        "part_capacity_bytes": capacity,
        "parts": parts,
        "wheels": sorted(records.values(), key=lambda r: r["name"]),
    }
    text = json.dumps(manifest, indent=1) + "\n"
    (bundle / MANIFEST).write_text(text)
    for part in parts:
        (bundle / part["name"] / MANIFEST).write_text(text)
    print(summary(manifest, tree))
    return 0


def summary(manifest: dict, tree: int) -> str:
    lines = [
        f"GPU bundle: {len(manifest['wheels'])} wheels (cp312 manylinux x86-64), xgboost "
        f"{manifest['xgboost']}; working tree {tree / MIB:.1f} MiB; a call carries <= "
        f"{manifest['limit_bytes'] / MIB:.0f} MiB",
        "",
        "| part | wheels (pieces) | MiB | with tree MiB |",
        "|---|---:|---:|---:|",
    ]
    for part in manifest["parts"]:
        size = part["bytes"]
        lines.append(
            f"| {part['name']} | {len(part['files'])} | {size / MIB:.1f} | "
            f"{(size + tree) / MIB:.1f} |"
        )
    needed = [p["name"] for p in manifest["parts"] if p["name"].startswith("part-")]
    lines += [
        "",
        f"Carry {', '.join(needed)} (one per device call: `make gpu-install PART=N`, the last "
        "one `make gpu-check`); fallback-N only when gpu-check asks for it.",
    ]
    return "\n".join(lines)


def check(args: argparse.Namespace) -> int:
    """Each part of an existing bundle, with the working tree, fits one call; tags are right."""
    root = Path(args.root)
    manifest = load_manifest(root / BUNDLE)
    tree = tree_bytes(root)
    bad = [wheel_problem(w["file"]) for w in manifest["wheels"]]
    bad = [b for b in bad if b]
    for part in manifest["parts"]:
        folder = root / BUNDLE / part["name"]
        carried = sum(p.stat().st_size for p in folder.iterdir())
        if carried + tree >= CALL_LIMIT:
            bad.append(f"{part['name']}: {(carried + tree) / MIB:.1f} MiB with the tree")
    print(summary(manifest, tree))
    if bad:
        print("\n".join(bad), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--xgboost",
        choices=("cuda", "cpu"),
        default="cuda",
        help="XGBoost wheel: with CUDA (GPU predictor; ~120 MiB) or CPU-only",
    )
    parser.add_argument("--pip", default=str(ROOT / ".tools" / "bin" / "pip"))
    parser.add_argument("--root", default=str(ROOT))
    parser.add_argument("--check", action="store_true", help="check an existing bundle")
    args = parser.parse_args(argv)
    return check(args) if args.check else build(args)


if __name__ == "__main__":
    raise SystemExit(main())
