"""The landing zone: which files landed for a partition, and their bytes, through fsspec."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import fsspec

from tasks import step
from tasks.blocks import BLOCK_BYTES
from tasks.storage import LOCAL, Store


@dataclass(frozen=True)
class LandedFile:
    """One file of a landing partition. `name` is its path relative to the partition."""

    uri: str
    name: str
    size: int


WHOLE_FILE_BYTES = BLOCK_BYTES
"""Files up to this size are read whole; larger ones in blocks when they are parsed."""


@dataclass(frozen=True)
class FileContent:
    """A landed file's SHA-256 and, unless it is larger than `WHOLE_FILE_BYTES`, its bytes;
    `chunks` reads it either way."""

    file: LandedFile
    data: bytes | None
    checksum: str

    @property
    def holds_text(self) -> bool:
        """Whether anything but whitespace landed (a file read in blocks is never blank)."""
        return self.data is None or bool(self.data.strip())

    def chunks(self, store: Store = LOCAL, size: int = BLOCK_BYTES) -> Iterator[bytes]:
        """The file's bytes, in pieces of `size` when it was not read whole."""
        if self.data is not None:
            yield self.data
            return
        with store.open(self.file.uri, "rb") as handle:
            while chunk := handle.read(size):
                yield chunk

    def receipt(self) -> dict:
        """What the ledger records of a file read."""
        size = self.file.size if self.data is None else len(self.data)
        return {"path": self.file.uri, "size": size, "sha256": self.checksum}


def partition_uri(landing_uri: str, dataset: str, ds: str) -> str:
    return f"{landing_uri.rstrip('/')}/{dataset}/ds={ds}"


def is_marker(name: str) -> bool:
    """Hidden and marker files (`.foo`, `_SUCCESS`) are not data, by the usual convention."""
    return any(part.startswith((".", "_")) for part in name.split("/"))


def landed_days(landing_uri: str, dataset: str, store: Store = LOCAL) -> list[str]:
    """The days with a partition folder under `landing/{dataset}/`, oldest first."""
    fs, path = store.filesystem(f"{landing_uri.rstrip('/')}/{dataset}")
    if not fs.isdir(path):
        return []
    names = (entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(path, detail=False))
    return sorted(name.removeprefix("ds=") for name in names if name.startswith("ds="))


def list_landed_files(
    landing_uri: str, dataset: str, ds: str, store: Store = LOCAL
) -> tuple[list[LandedFile], list[str]]:
    """Data files under `landing/{dataset}/ds={ds}/` (recursively, sorted by name), and
    the marker files skipped. Raises FileNotFoundError when the partition has no data file."""
    root = partition_uri(landing_uri, dataset, ds)
    fs, path = store.filesystem(root)
    if not fs.isdir(path):
        raise FileNotFoundError(f"nothing landed for {dataset} ds={ds}: {root} does not exist")
    files, markers = [], []
    for full_path, info in sorted(fs.find(path, detail=True).items()):
        name = full_path[len(path.rstrip("/")) + 1 :]
        if is_marker(name):
            markers.append(name)
            continue
        if info.get("islink"):
            _refuse_link_out_of(landing_uri, f"{root}/{name}", full_path)
        uri = f"{root}/{name}"
        files.append(LandedFile(uri=uri, name=name, size=int(info.get("size") or 0)))
    if not files:
        raise FileNotFoundError(f"nothing landed for {dataset} ds={ds}: {root} holds no data file")
    return files, markers


class LinkOutOfLanding(RuntimeError):
    """A landed file is a symbolic link to a file outside the landing zone."""


def _refuse_link_out_of(landing_uri: str, uri: str, local_path: str) -> None:
    """Raise LinkOutOfLanding when the link at `local_path` resolves outside the landing
    zone: ingest reads only what was landed, never what a link points at elsewhere."""
    root = os.path.realpath(fsspec.core.url_to_fs(landing_uri)[1])
    target = os.path.realpath(local_path)
    if os.path.commonpath([root, target]) != root:
        raise LinkOutOfLanding(
            f"{uri} is a link to {target}, outside the landing zone {landing_uri}: refused; "
            "land a copy of the file instead"
        )


def read_landed_file(
    file: LandedFile, store: Store = LOCAL, whole_below: int | None = WHOLE_FILE_BYTES
) -> FileContent:
    """The file's SHA-256 and, up to `whole_below` bytes (None: any size), its bytes exactly
    as landed (no decompression); a larger file is hashed in blocks and left unread."""
    with store.open(file.uri, "rb") as handle:
        if whole_below is None or file.size <= whole_below:
            data = handle.read()
            return FileContent(file=file, data=data, checksum=hashlib.sha256(data).hexdigest())
        digest = hashlib.sha256()
        while chunk := handle.read(BLOCK_BYTES):
            digest.update(chunk)
    return FileContent(file=file, data=None, checksum=digest.hexdigest())


def without_duplicates(
    contents: Sequence[FileContent], ingested_elsewhere: Mapping[str, str]
) -> tuple[list[FileContent], list[dict]]:
    """The files to ingest, and the duplicates left out: a file whose bytes equal an
    earlier one's of the day (by name) or those of a file ingested on another day
    (`ingested_elsewhere`: sha256 → where). Empty files hold no record: never duplicates."""
    kept, duplicates, seen = [], [], dict(ingested_elsewhere)
    for content in contents:
        same_as = seen.get(content.checksum) if content.holds_text else None
        if same_as is None:
            seen.setdefault(content.checksum, content.file.uri)
            kept.append(content)
        else:
            duplicates.append(content.receipt() | {"same_as": same_as})
    return kept, duplicates


@step(retries=2)
def fetch_partition(
    landing_uri: str,
    dataset: str,
    ds: str,
    store: Store = LOCAL,
    whole_below: int | None = WHOLE_FILE_BYTES,
) -> tuple[list[FileContent], list[str]]:
    """Every data file of a landing partition, read (those over `whole_below` bytes only
    hashed: they are read in blocks when parsed), and the marker files skipped."""
    files, markers = list_landed_files(landing_uri, dataset, ds, store)
    return [read_landed_file(file, store, whole_below) for file in files], markers
