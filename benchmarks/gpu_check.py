"""The GPU check, run on a lent GPU machine (`make gpu-install PART=N`, then `make gpu-check`).

    python3 -m benchmarks.gpu_check install 2          # check the carried part-2, list the rest
    python3 -m benchmarks.gpu_check run                # install the bundle, run every step
    python3 -m benchmarks.gpu_check run --steps forest,scoring

`run` stops at once (exit 2) where no CUDA device is visible, and (exit 3) while parts of the
bundle (`make gpu-bundle`) are missing. Then it joins and checks the wheels, installs them
without any index into `.gpu-env/` (a venv layered over the device's own site-packages, so
the device's CuPy, NumPy and every package that satisfies our requirements are used; pip
takes from the bundle only what is missing or out of range, exit 4 naming the fallback part
to carry when neither fits) and runs the steps:

* tests: `pytest -m gpu` (kernels against the CPU twin and XGBoost, LocalCUDACluster scoring);
* sanitizer: compute-sanitizer memcheck, racecheck and synccheck on forest kernel launches;
* forest: `benchmarks.forest --no-cpu` at 1M and 10M rows, 500 trees, depth 8, on the
  Adult, HIGGS-like and best-case models (its GPU columns; models trained on the GPU);
* scoring: the GPU row of `benchmarks.scoring` at 10M rows.

Each step's figures go to `gpu-check.md` / `gpu-check.json` (card, driver, versions, date),
with the full log, in `$OUT` when set and always in `.gpu-results/` (results of earlier calls
on the same machine are kept, so the steps can be spread over several calls). A step that no
longer fits the time budget of one device call (`--budget`) is left for the next call.
Standard library only until the environment is built.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.gpu_bundle import BUNDLE, MANIFEST, ROOT, canonical, sha256

ENV = ROOT / ".gpu-env"
# Where `gpu-install` also keeps each checked part, outside the checkout, so that parts carried
# by earlier calls survive however the next call lays the working tree out.
STASH = Path(os.environ.get("TIDEWATER_GPU_STASH", "/var/tmp/tidewater-gpu-bundle"))
RESULTS = ROOT / ".gpu-results"
STEPS = ("tests", "sanitizer", "forest", "scoring")
SANITIZER_TOOLS = ("memcheck", "racecheck", "synccheck")
NO_GPU, MISSING_PARTS, INSTALL_FAILED = 2, 3, 4
# Distributions whose versions the results record.
VERSIONS = [
    *("numpy", "cupy-cuda13x", "numba", "llvmlite", "xgboost", "xgboost-cpu", "pandas"),
    *("pyarrow", "scikit-learn", "dask", "distributed", "dask-cuda", "prefect", "deltalake"),
    *("pytest", "hypothesis", "cuda-core", "cuda-bindings"),
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- is there a GPU -----------------------------------------------------------------------------


def probe_gpu(python: str = sys.executable) -> dict | str:
    """The first visible GPU as nvidia-smi reports it, or why no CUDA device is usable.
    A device counts only once CuPy has allocated and computed on it (the driver can be
    present with no usable device)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "nvidia-smi is not on PATH: no NVIDIA driver on this machine"
    query = "--query-gpu=name,driver_version,memory.total,compute_cap"
    try:
        out = subprocess.run(
            [smi, query, "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi failed: {exc}"
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not lines:
        return f"nvidia-smi sees no GPU: {(out.stderr or out.stdout).strip()[:300]}"
    fields = [f.strip() for f in lines[0].split(",")] + ["", "", "", ""]
    card = {
        "name": fields[0],
        "driver": fields[1],
        "memory": fields[2],
        "compute_capability": fields[3],
        "gpus": len(lines),
    }
    code = (
        "import cupy; a = cupy.arange(4, dtype=cupy.float32); a += 1; "
        "cupy.cuda.runtime.deviceSynchronize(); assert float(a.sum()) == 10.0; "
        "print(cupy.cuda.runtime.runtimeGetVersion(), cupy.cuda.runtime.driverGetVersion())"
    )
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "CuPy did not finish a first allocation in 120 s"
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        return f"nvidia-smi lists {card['name']}, but CuPy cannot use it: {tail}"
    runtime, driver = out.stdout.split()
    card.update(cuda_runtime=int(runtime), cuda_driver=int(driver))
    return card


# --- the bundle on this machine -----------------------------------------------------------------


def find_manifest(bundle: Path) -> dict | None:
    """The manifest at the bundle's top, else any part's copy (in the checkout or the stash)."""
    for top in (bundle, STASH):
        for path in [top / MANIFEST, *sorted(top.glob(f"*/{MANIFEST}"))]:
            if path.is_file():
                return json.loads(path.read_text())
    return None


def folder_state(folder: Path, part: dict) -> str:
    """ "ok", "missing" or what is wrong with a part's copy in `folder`."""
    if not folder.is_dir():
        return "missing"
    for entry in part["files"]:
        path = folder / entry["file"]
        if not path.is_file():
            return f"incomplete ({entry['file']} missing)"
        if path.stat().st_size != entry["bytes"] or sha256(path) != entry["sha256"]:
            return f"corrupt ({entry['file']})"
    return "ok"


def part_folder(bundle: Path, part: dict) -> tuple[Path | None, str]:
    """(the folder holding an intact copy of `part`, "ok"), else (None, what is wrong)."""
    state = "missing"
    for folder in (bundle / part["name"], STASH / part["name"]):
        found = folder_state(folder, part)
        if found == "ok":
            return folder, found
        if state == "missing":
            state = found
    return None, state


def part_state(bundle: Path, part: dict) -> str:
    return part_folder(bundle, part)[1]


def _part_name(value: str) -> str:
    return f"part-{value}" if value.isdigit() else value


def install_part(args: argparse.Namespace) -> int:
    """`make gpu-install PART=N`: check the carried part, keep a copy of it outside the checkout
    (STASH), say which parts are still to come."""
    bundle = Path(args.bundle)
    manifest = find_manifest(bundle)
    if manifest is None:
        log(f"no bundle here ({bundle}): carry a part of it (make gpu-bundle builds them)")
        return MISSING_PARTS
    name = _part_name(args.part)
    parts = {p["name"]: p for p in manifest["parts"]}
    if name not in parts:
        log(f"no {name} in the manifest; parts: {', '.join(parts)}")
        return 1
    folder, state = part_folder(bundle, parts[name])
    if folder is not None and folder != STASH / name:
        try:
            shutil.rmtree(STASH / name, ignore_errors=True)
            shutil.copytree(folder, STASH / name)
        except OSError as exc:  # the copy in the checkout still counts
            log(f"could not keep a copy in {STASH}: {exc}")
    needed = [p for p in manifest["parts"] if p["name"].startswith("part-")]
    todo = [p["name"] for p in needed if part_state(bundle, p) != "ok"]
    log(f"{name}: {state}")
    log(f"still to carry: {', '.join(todo)}" if todo else "all parts here: run make gpu-check")
    return 0 if state == "ok" else 1


def stage_wheels(bundle: Path, manifest: dict) -> tuple[Path, list[str]]:
    """Join each wheel whose pieces are all here into `wheelhouse/` and check its sha256.
    Returns the wheelhouse and the names of the wheels staged."""
    house = bundle / "wheelhouse"
    house.mkdir(parents=True, exist_ok=True)
    folders = {p["name"]: part_folder(bundle, p)[0] for p in manifest["parts"]}
    staged = []
    for wheel in manifest["wheels"]:
        if not all(folders[piece["part"]] for piece in wheel["pieces"]):
            continue
        target = house / wheel["file"]
        if not (target.is_file() and sha256(target) == wheel["sha256"]):
            with open(target, "wb") as out:
                for piece in wheel["pieces"]:
                    out.write((folders[piece["part"]] / piece["file"]).read_bytes())
            if sha256(target) != wheel["sha256"]:
                raise SystemExit(f"{wheel['file']}: joined pieces do not match its sha256")
        staged.append(wheel["name"])
    return house, staged


def _env_python() -> Path:
    return ENV / "bin" / "python"


def build_env(manifest: dict, house: Path, logfile) -> tuple[int, str]:
    """Install the staged wheels into `.gpu-env` with pip and no index, over the device's own
    packages (kept where they satisfy our requirements). Returns (exit code, message)."""
    stamp = ENV / "tidewater-bundle.json"
    key = json.dumps(
        {
            "wheels": sorted(p.name for p in house.glob("*.whl")),
            "requirements": manifest["requirements"],
            "python": sys.executable,
        }
    )
    if stamp.is_file() and stamp.read_text() == key and _env_python().exists():
        return 0, "environment already built from this bundle"
    shutil.rmtree(ENV, ignore_errors=True)
    run = _logged(logfile)
    if run([sys.executable, "-m", "venv", "--without-pip", str(ENV)]) != 0:
        return INSTALL_FAILED, "python3 -m venv failed (see the log)"
    purelib = subprocess.run(
        [str(_env_python()), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    import site

    # The checkout, then the device's site-packages with their own .pth files processed.
    layers = [str(ROOT)] + [f"import site; site.addsitedir({d!r})" for d in site.getsitepackages()]
    (Path(purelib) / "_tidewater_device.pth").write_text("\n".join(layers) + "\n")
    (ENV / "requirements.txt").write_text("\n".join(manifest["requirements"]) + "\n")
    import importlib.metadata as metadata

    pins = [f"{d}=={metadata.version(d)}" for d in ("numpy",) if _installed(d)]
    (ENV / "constraints.txt").write_text("\n".join(pins) + "\n")
    staged = {p.name for p in house.glob("*.whl")}
    absent = [
        w for w in manifest["wheels"] if w["file"] not in staged and not _installed(w["name"])
    ]
    if absent:  # the device has no copy at all: say every part to carry at once
        parts = sorted({piece["part"] for w in absent for piece in w["pieces"]})
        names = ", ".join(w["name"] for w in absent)
        calls = "; ".join(f"make gpu-install PART={p}" for p in parts)
        return INSTALL_FAILED, (
            f"the device lacks {names}: carry {', '.join(parts)} ({calls}), "
            "then make gpu-check again"
        )
    pip = [
        str(_env_python()),
        "-m",
        "pip",
        "install",
        "--no-index",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--find-links",
        str(house),
    ]
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    out = _capture(
        logfile,
        [*pip, "-r", str(ENV / "requirements.txt"), "-c", str(ENV / "constraints.txt")],
        env,
    )
    if out.returncode != 0:
        return INSTALL_FAILED, install_advice(out.stderr, manifest, house)
    xgboost = [w for w in manifest["wheels"] if w["name"] in ("xgboost", "xgboost-cpu")]
    for wheel in xgboost:  # without its NCCL dependency (multi-GPU only)
        out = _capture(logfile, [*pip, "--no-deps", str(house / wheel["file"])], env)
        if out.returncode != 0:
            return INSTALL_FAILED, f"installing {wheel['file']} failed (see the log)"
    stamp.write_text(key)
    return 0, "environment built"


def _installed(name: str) -> bool:
    import importlib.metadata as metadata

    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def install_advice(output: str, manifest: dict, house: Path) -> str:
    """What to carry when pip could not resolve: the fallback parts holding the wheels of the
    packages pip names (the device's own copy of them does not fit our requirements)."""
    names = set()
    for pattern in (
        r"requirement ([A-Za-z0-9_.\-]+)",
        r"found for ([A-Za-z0-9_.\-]+)",
        r"depends on ([A-Za-z0-9_.\-]+)",
    ):
        names |= {canonical(n) for n in re.findall(pattern, output)}
    staged = {p.name for p in house.glob("*.whl")}
    parts = sorted(
        {
            piece["part"]
            for w in manifest["wheels"]
            if w["name"] in names and w["file"] not in staged
            for piece in w["pieces"]
        }
    )
    named = ", ".join(sorted(names)) or "see the log"
    if parts:
        calls = "; ".join(f"make gpu-install PART={p}" for p in parts)
        return (
            f"pip could not resolve {named} from the device's packages and the carried "
            f"parts: carry {', '.join(parts)} ({calls}), then make gpu-check again"
        )
    return f"pip could not resolve {named}, and no part of the bundle holds it (see the log)"


def _logged(logfile):
    def run(command: list[str], **kwargs) -> int:
        logfile.write(f"$ {' '.join(command)}\n")
        logfile.flush()
        return subprocess.run(
            command, stdout=logfile, stderr=subprocess.STDOUT, **kwargs
        ).returncode

    return run


def _capture(logfile, command: list[str], env: dict | None = None, timeout: float | None = None):
    """Run `command`; its output goes to the log. Returns a CompletedProcess whose stdout is
    the command's stdout and stderr its stdout and stderr together (exit 124 on time-out)."""
    logfile.write(f"$ {' '.join(command)}\n")
    logfile.flush()
    try:
        out = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        code, stdout, stderr = out.returncode, out.stdout, out.stderr
    except subprocess.TimeoutExpired as exc:
        code, stdout, stderr = 124, _text(exc.stdout), _text(exc.stderr)
        stderr += f"\n[timed out after {timeout:.0f}s]"
    logfile.write(stdout + stderr + "\n")
    logfile.flush()
    return subprocess.CompletedProcess(command, code, stdout, stdout + stderr)


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value or ""


# --- steps --------------------------------------------------------------------------------------


def _step_env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{ENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def versions(logfile) -> dict:
    code = (
        "import importlib.metadata as m, json, sys\n"
        f"names = {VERSIONS!r}\n"
        "out = {'python': sys.version.split()[0]}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "from kernels import gpu_available\n"
        "out['kernels.gpu_available'] = gpu_available()\n"
        "print(json.dumps(out))\n"
    )
    out = _capture(logfile, [str(_env_python()), "-c", code], _step_env(), 300)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": out.stderr[-500:]}


def step_tests(args, logfile, timeout: float) -> dict:
    junit = RESULTS / "pytest-gpu.xml"
    command = [
        str(_env_python()),
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--junitxml={junit}",
    ]
    out = _capture(logfile, command, _step_env(), timeout)
    summary = _last_match(
        out.stdout, r"^=* ?(\d+ (?:passed|failed|error|skipped|deselected).*?)(?: =+)?$"
    )
    passed = int(_first(r"(\d+) passed", summary) or 0)
    failed = sum(int(_first(rf"(\d+) {w}", summary) or 0) for w in ("failed", "error"))
    # A GPU test skipped for want of a device means the environment cannot reach the GPU.
    no_device = sum(
        int(n) for n in re.findall(r"^SKIPPED \[(\d+)\].*needs a CUDA device", out.stdout, re.M)
    )
    ok = out.returncode == 0 and passed > 0 and failed == 0 and no_device == 0
    note = f"; {no_device} skipped for want of a CUDA device" if no_device else ""
    return {"ok": ok, "summary": (summary or out.stdout[-300:]) + note, "rc": out.returncode}


def find_sanitizer() -> str | None:
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    for pattern in (
        "/usr/local/cuda*/bin/compute-sanitizer",
        "/usr/local/cuda*/compute-sanitizer/compute-sanitizer",
        "/opt/nvidia/*/compute-sanitizer",
        "/opt/nvidia/**/compute-sanitizer",
    ):
        hits = sorted(Path("/").glob(pattern.lstrip("/")))
        if hits:
            return str(hits[-1])
    return None


def step_sanitizer(args, logfile, timeout: float) -> dict:
    sanitizer = find_sanitizer()
    if sanitizer is None:
        return {"ok": False, "summary": "compute-sanitizer not found"}
    model = RESULTS / "sanitizer-model.json"
    launch = [
        str(_env_python()),
        "-m",
        "benchmarks.gpu_check",
        "launch-forest",
        "--model",
        str(model),
    ]
    started = time.monotonic()
    warm = _capture(logfile, launch, _step_env(), timeout)  # trains the model, fills caches
    if warm.returncode != 0:
        return {
            "ok": False,
            "summary": "the forest launch failed outside the sanitizer",
            "rc": warm.returncode,
        }
    results, ok = {}, True
    for tool in SANITIZER_TOOLS:
        left = timeout - (time.monotonic() - started)
        command = [
            sanitizer,
            "--tool",
            tool,
            "--error-exitcode",
            "86",
            "--print-limit",
            "20",
            *launch,
        ]
        out = _capture(logfile, command, _step_env(), max(left, 1))
        line = _last_match(out.stderr, r"(ERROR SUMMARY.*|RACECHECK SUMMARY.*)") or "no summary"
        results[tool] = f"rc {out.returncode}: {line}"
        ok = ok and out.returncode == 0
    launches = _last_match(warm.stdout, r"^launches: .*") or ""
    return {
        "ok": ok,
        "summary": "; ".join(f"{t}: {r}" for t, r in results.items()),
        "launches": launches,
    }


def step_forest(args, logfile, timeout: float) -> dict:
    command = [
        str(_env_python()),
        "-m",
        "benchmarks.forest",
        "--rows",
        *args.forest_rows.split(","),
        "--trees",
        "500",
        "--depths",
        "8",
        "--models",
        "adult",
        "higgs",
        "best",
        "--no-cpu",
        "--repeats",
        "5",
    ]
    out = _capture(logfile, command, _step_env(), timeout)
    table = _table(out.stdout)
    gpu = "ours GPU rows/s" in table
    return {
        "ok": out.returncode == 0 and gpu,
        "table": table,
        "rc": out.returncode,
        "summary": "GPU columns present" if gpu else "no GPU columns in the table",
    }


def step_scoring(args, logfile, timeout: float) -> dict:
    command = [
        str(_env_python()),
        "-m",
        "benchmarks.scoring",
        "--rows",
        args.scoring_rows,
        "--no-cpu",
        "--no-profile",
        "--repeats",
        "3",
    ]
    out = _capture(logfile, command, _step_env(), timeout)
    table = _table(out.stdout)
    gpu = "| gpu |" in table
    return {
        "ok": out.returncode == 0 and gpu,
        "table": table,
        "rc": out.returncode,
        "summary": "GPU row present" if gpu else "no GPU row in the table",
    }


RUNNERS = {
    "tests": step_tests,
    "sanitizer": step_sanitizer,
    "forest": step_forest,
    "scoring": step_scoring,
}
# Seconds a step is given at most (the device runs one command for at most 10 minutes).
STEP_SECONDS = {"tests": 420, "sanitizer": 300, "forest": 540, "scoring": 540}


def _first(pattern: str, text: str | None) -> str | None:
    match = re.search(pattern, text or "")
    return match.group(1) if match else None


def _last_match(text: str, pattern: str) -> str | None:
    found = re.findall(pattern, text, flags=re.MULTILINE)
    if not found:
        return None
    last = found[-1]
    return (last[0] if isinstance(last, tuple) else last).strip()


def _table(text: str) -> str:
    """The markdown tables and lines a benchmark printed on stdout (its report)."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    return "\n".join(lines[first:]) if first is not None else ""


# --- the tiny program the sanitizer runs --------------------------------------------------------


def launch_forest(args: argparse.Namespace) -> int:
    """Launch the forest kernel on a small model for a few row counts (each launch plan the
    sizes reach) and compare with the CPU twin; the model is trained once and cached."""
    import cupy
    import numpy as np
    import xgboost as xgb

    from kernels import compile_forest
    from kernels.forest_cpu import predict_margin_cpu
    from kernels.forest_gpu import plan_launch, predict_margin_gpu

    # Plain cudaMalloc per array: a memory pool's sub-allocations hide out-of-bounds accesses
    # from memcheck.
    cupy.cuda.set_allocator(None)
    rng = np.random.default_rng(7)
    model = Path(args.model)
    if not model.is_file():
        X = rng.standard_normal((4000, 12), dtype=np.float32)
        X[rng.random(X.shape) < 0.1] = np.nan
        y = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * 0.5 > 0).astype(np.float32)
        params = {"objective": "binary:logistic", "max_depth": 6, "nthread": 1}
        model.parent.mkdir(parents=True, exist_ok=True)
        xgb.train(params, xgb.DMatrix(X, y), 40).save_model(model)
    forest = compile_forest(xgb.Booster(model_file=model))
    sm_count = cupy.cuda.Device().attributes["MultiProcessorCount"]
    launches = []
    for rows in (1, 1000, 200_000):
        X = rng.standard_normal((rows, 12), dtype=np.float32)
        X[rng.random(X.shape) < 0.1] = np.nan
        out = predict_margin_gpu(forest, cupy.asarray(X))
        cupy.cuda.Device().synchronize()
        ref = predict_margin_cpu(forest, X)
        exact = bool((out.get().view(np.uint32) == ref.view(np.uint32)).all())
        launches.append(
            f"{rows} rows {plan_launch(forest, rows, sm_count).kernel} "
            f"{'bit-exact' if exact else 'DIFFERS'}"
        )
        if not exact:
            print("launches: " + "; ".join(launches))
            return 1
    print("launches: " + "; ".join(launches))
    return 0


# --- results ------------------------------------------------------------------------------------


def write_results(record: dict, logtext: str) -> list[Path]:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gpu-check.json").write_text(json.dumps(record, indent=1) + "\n")
    (RESULTS / "gpu-check.md").write_text(render(record))
    (RESULTS / "gpu-check.log").write_text(logtext)
    written = [
        RESULTS / n for n in ("gpu-check.md", "gpu-check.json", "gpu-check.log", "pytest-gpu.xml")
    ]
    out = os.environ.get("OUT")
    if out:
        for path in written:
            if path.is_file():
                shutil.copy(path, Path(out) / path.name)
    return written


def render(record: dict) -> str:
    card = record.get("card", {})
    lines = [
        f"# GPU check: {card.get('name', '?')}",
        "",
        f"Card: {card.get('name', '?')} ({card.get('memory', '?')}, compute capability "
        f"{card.get('compute_capability', '?')}), driver {card.get('driver', '?')}, CUDA "
        f"runtime/driver {card.get('cuda_runtime', '?')}/{card.get('cuda_driver', '?')}; "
        f"host {record.get('host', '?')}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items()),
        "",
        f"Install: {record.get('install', '?')}",
        "",
        "| step | date (UTC) | result | seconds | summary |",
        "|---|---|---|---:|---|",
    ]
    for name in STEPS:
        step = record.get("steps", {}).get(name)
        if step:
            result = "PASS" if step["ok"] else ("NOT RUN" if step.get("not_run") else "FAIL")
            summary = " ".join(str(step.get("summary", "")).split()).replace("|", "/")
            lines.append(
                f"| {name} | {step['date']} | {result} | {step.get('seconds', 0):.0f} | {summary} |"
            )
    for name in ("forest", "scoring"):
        table = record.get("steps", {}).get(name, {}).get("table")
        if table:
            lines += ["", f"## {name} ({record['steps'][name]['date']})", "", table]
    return "\n".join(lines) + "\n"


def check_parts(bundle: Path) -> tuple[dict | None, str | None]:
    """(manifest, None) when every needed part is here and intact, else (manifest, why not)."""
    manifest = find_manifest(bundle)
    if manifest is None:
        return None, f"no bundle at {bundle}: carry its parts (make gpu-bundle builds them)"
    needed = [p for p in manifest["parts"] if p["name"].startswith("part-")]
    states = {p["name"]: part_state(bundle, p) for p in needed}
    missing = [n for n, s in states.items() if s != "ok"]
    if missing:
        return manifest, (
            "parts of the bundle are not here: "
            + ", ".join(f"{n} ({states[n]})" for n in missing)
            + ". Carry each (carry .gpu-bundle/NAME, make gpu-install PART=NAME), one per call"
            " on a warm machine, then make gpu-check."
        )
    return manifest, None


def install_env(args: argparse.Namespace) -> int:
    """Build `.gpu-env` from the carried parts (no GPU needed): what `run` does first."""
    bundle = Path(args.bundle)
    manifest, problem = check_parts(bundle)
    if problem:
        log(f"gpu-check: {problem}")
        return MISSING_PARTS
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "gpu-env.log", "w") as logfile:
        house, staged = stage_wheels(bundle, manifest)
        log(f"{len(staged)} wheels staged; installing into {ENV} ...")
        code, message = build_env(manifest, house, logfile)
    log(message)
    return code


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = set(steps) - set(STEPS)
    if unknown:
        log(f"unknown steps {sorted(unknown)}; steps: {', '.join(STEPS)}")
        return 1
    card = probe_gpu()
    if isinstance(card, str):
        log(
            f"gpu-check: no usable CUDA device here: {card}.\n"
            "It runs on a lent GPU machine (README: 'Checking the GPU path on a device')."
        )
        return NO_GPU
    log(f"GPU: {card['name']}, driver {card['driver']}, {card['memory']}")
    bundle = Path(args.bundle)
    manifest, problem = check_parts(bundle)
    if problem:
        log(f"gpu-check: {problem}")
        return MISSING_PARTS
    RESULTS.mkdir(exist_ok=True)
    logpath = RESULTS / "gpu-check.log"
    with open(logpath, "w") as logfile:
        house, staged = stage_wheels(bundle, manifest)
        log(f"{len(staged)} wheels staged; installing into {ENV} ...")
        code, message = build_env(manifest, house, logfile)
        log(message)
        previous = RESULTS / "gpu-check.json"
        record = json.loads(previous.read_text()) if previous.is_file() else {}
        if record.get("card", {}).get("name") not in (None, card["name"]):
            record = {}
        record.update(card=card, host=platform.node(), install=message)
        if code:
            write_results(record, logpath.read_text())
            return code
        record["versions"] = versions(logfile)
        record.setdefault("steps", {})
        if not record["versions"].get("kernels.gpu_available"):
            log("gpu-check: the environment's CuPy cannot use the GPU (see the log)")
            write_results(record, logpath.read_text())
            return NO_GPU
        failed = False
        for name in steps:
            left = args.budget - (time.monotonic() - started)
            today = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
            if left < 60:
                record["steps"][name] = {
                    "ok": False,
                    "not_run": True,
                    "date": today,
                    "summary": "no time left in this call: run it next "
                    f"(make gpu-check STEPS={name})",
                }
                log(f"{name}: left for the next call")
                failed = True
                continue
            log(f"{name} (at most {min(STEP_SECONDS[name], left):.0f}s) ...")
            began = time.monotonic()
            result = RUNNERS[name](args, logfile, min(STEP_SECONDS[name], left))
            result.update(date=today, seconds=time.monotonic() - began)
            record["steps"][name] = result
            log(f"{name}: {'PASS' if result['ok'] else 'FAIL'}: {result.get('summary', '')}")
            failed = failed or not result["ok"]
            write_results(record, logpath.read_text())
    write_results(record, logpath.read_text())
    print(render(record))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser("install", help="check one carried part (make gpu-install PART=N)")
    install.add_argument("part", help="N for part-N, or a part's name (fallback-1)")
    check = sub.add_parser("run", help="install the bundle and run the steps (make gpu-check)")
    check.add_argument("--steps", default=",".join(STEPS), help=f"of {', '.join(STEPS)}")
    check.add_argument(
        "--budget",
        type=float,
        default=570.0,
        help="seconds this call may take; later steps wait for the next call",
    )
    check.add_argument("--forest-rows", default="1000000,10000000")
    check.add_argument("--scoring-rows", default="10000000")
    env = sub.add_parser("env", help="build .gpu-env from the carried parts (no GPU needed)")
    for p in (install, check, env):
        p.add_argument("--bundle", default=str(ROOT / BUNDLE))
    launch = sub.add_parser("launch-forest", help="the forest launches compute-sanitizer runs")
    launch.add_argument("--model", default=str(RESULTS / "sanitizer-model.json"))
    args = parser.parse_args(argv)
    if args.command == "install":
        return install_part(args)
    if args.command == "env":
        return install_env(args)
    if args.command == "launch-forest":
        return launch_forest(args)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
