"""A landed file larger than a worker would want to hold: 2 GB of CSV (plain, or gzip
decompressed as it is read), bad lines in every block, ingested and validated in one
process whose memory stays bounded, with every line accounted for."""

from __future__ import annotations

import functools
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # about 3 min a file on 2 cores

DS = "2024-01-01"
FILE_BYTES = 2 * 10**9
MEMORY_BOUND_MB = 1000  # the file is 1907 MiB; read whole it would need several times that

CHILD = """
import json, sys
from pathlib import Path
from datasets import get_dataset
from tasks.bronze import stage_partition, write_partition
from tasks.lake import Lake
from tasks.landing import fetch_partition
from tasks.validation import commit_validated, stage_validated

landing, lake_root, ds = sys.argv[1:]
spec, lake = get_dataset("adult"), Lake(lake_root)
contents, _ = fetch_partition.fn(landing, spec.name, ds)
staged = stage_partition.fn(lake, contents, spec.name, spec.columns, ds, "large",
                            spec.landing, (spec.roles.target,))
write_partition.fn(lake, spec.name, spec.columns, ds, staged, "large")
validated = stage_validated.fn(lake, spec, ds, "large")
commit_validated.fn(lake, spec, ds, validated, "large")
print(json.dumps({
    "bronze": staged.bronze_rows, "rejects": staged.rejected_rows,
    "silver": validated.silver_count, "quarantine": validated.quarantined_count,
    "bronze_files": len(staged.bronze),
    # VmHWM, not ru_maxrss: Linux carries the parent's peak over into a child at exec
    "peak_rss_mb": int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])
    / 1024,
}))
"""


def _land_large_day(landing: Path, name: str) -> tuple[int, int]:
    """About FILE_BYTES of Adult CSV in file `name` (gzip when it ends `.gz`), a bad line (a
    field short) after every 997 good ones and a quoted field holding a comma and a line
    break after every 991: (good, bad) lines."""
    from datasets.adult import synthesize
    from datasets.landing_writer import encode_landing_file

    frame = synthesize(20_000, seed=3)
    frame = frame[[column for column in frame.columns if not column.startswith("_")]]
    header, body = encode_landing_file(frame, "csv").split(b"\n", 1)
    rows = body.rstrip(b"\n").split(b"\n")
    for n in range(0, len(rows), 991):  # a workclass of "a,\nb": quoted, one record
        fields = rows[n].split(b",")
        rows[n] = b",".join([fields[0], b'"Private,\nand more"', *fields[2:]])
    chunk, good, bad = [], 0, 0
    for n, row in enumerate(rows):
        chunk.append(row)
        good += 1
        if n % 997 == 996:
            chunk.append(b"1,2,3")
            bad += 1
    piece = b"\n".join(chunk) + b"\n"
    path = landing / "adult" / f"ds={DS}" / name
    path.parent.mkdir(parents=True)
    copies = FILE_BYTES // len(piece) + 1
    opener = functools.partial(gzip.open, compresslevel=1) if name.endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(header + b"\n")
        for _ in range(copies):
            handle.write(piece)
    return good * copies, bad * copies


@pytest.mark.parametrize("name", ["part-0001.csv", "part-0001.csv.gz"])
def test_a_2gb_file_is_ingested_and_validated_in_bounded_memory_losing_nothing(tmp_path, name):
    good, bad = _land_large_day(tmp_path / "landing", name)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "landing"), str(tmp_path / "lake"), DS],
        capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["bronze"] == good and result["rejects"] == bad
    assert result["silver"] + result["quarantine"] == good
    assert result["bronze_files"] > 20  # written block by block
    assert result["peak_rss_mb"] < MEMORY_BOUND_MB, result
