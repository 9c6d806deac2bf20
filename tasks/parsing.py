"""Parsing landed bytes into records of strings, keeping every line it cannot parse.

Each format yields `ParsedFile`: records (one dict of column → string per row, with the
physical line or row number it came from) and rejects (the raw text of each line that
could not be read as a row, and why). Typing is validation's job, not parsing's.
"""

from __future__ import annotations

import csv
import io
import json
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from datasets import LandingFormat


@dataclass
class Record:
    line: int
    values: dict[str, str | None]
    issues: list[str] = field(default_factory=list)
    extra: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Reject:
    line: int | None
    raw_text: str | None
    error: str


@dataclass
class ParsedFile:
    records: list[Record] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unreadable: str | None = None  # why the whole file was not read (no record counted)


def parse_file(
    name: str,
    data: bytes,
    columns: Sequence[str],
    landing: LandingFormat | None = None,
    optional: Sequence[str] = (),
) -> ParsedFile:
    """Records and rejects of one landed file named `name`, read as the dataset's landing
    format declares for its suffix. A file of an undeclared kind is `unreadable`. Columns
    in `optional` (the target: labels may arrive apart) may be absent: null, not an issue."""
    landing = landing or LandingFormat()
    fmt = landing.kind_of(name)
    if fmt is None:
        return ParsedFile(
            unreadable=f"{name}: undeclared file kind ({len(data):,} bytes); declare its "
            f"suffix in the dataset's LandingFormat.kinds"
        )
    notes: list[str] = []
    cut_short: list[Reject] = []
    if name.lower().endswith(".gz"):
        if data and not data.startswith(GZIP_MAGIC):
            return ParsedFile(
                unreadable=f"{name}: not gzip data ({len(data):,} bytes, starting "
                f"{data[:24].decode('utf-8', 'replace')!r}); recompress it, or land it "
                "without .gz"
            )
        data, truncated = gunzip(data)
        if truncated:
            notes.append(truncated)
            cut_short.append(Reject(None, None, truncated))
            # The bytes after the last newline are a row cut mid-value: never trust them.
            end = data.rfind(b"\n") + 1
            data, tail = data[:end], data[end:]
            if tail.strip():
                line = data.count(b"\n") + 1
                cut_short.append(Reject(line, _raw_text(tail), "incomplete last line"))
    if not data.strip():
        parsed = ParsedFile(notes=["empty file"])
    elif fmt in ("csv", "tsv"):
        parsed = parse_csv(data, columns, landing, delimiter="\t" if fmt == "tsv" else None)
    elif fmt == "jsonl":
        parsed = parse_jsonl(data, columns, landing)
    elif fmt == "parquet":
        parsed = parse_parquet(data, columns, landing)
    else:
        return ParsedFile(unreadable=f"{name}: unknown file kind {fmt!r} declared")
    parsed.notes = notes + parsed.notes
    parsed.rejects.extend(cut_short)
    absent_allowed = set(missing_column_issues(optional))
    for record in parsed.records:
        record.issues = [issue for issue in record.issues if issue not in absent_allowed]
    return parsed


GZIP_MAGIC = b"\x1f\x8b"


def gunzip(data: bytes) -> tuple[bytes, str | None]:
    """Decompressed bytes (all members) and a note if the stream is cut short or corrupt."""
    out, rest = [], data
    while rest:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out.append(decompressor.decompress(rest))
        except zlib.error as error:
            return b"".join(out), f"truncated gzip stream: corrupt data ({error})"
        if not decompressor.eof:
            return b"".join(out), f"truncated gzip stream after {len(data)} compressed bytes"
        rest = decompressor.unused_data
    return b"".join(out), None


def _decoded_lines(data: bytes, encoding: str) -> Iterator[tuple[int, str | None, bytes]]:
    """(line number, text or None when it does not decode, raw bytes) per physical line."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            yield number, raw.decode(encoding), raw
        except UnicodeDecodeError:
            yield number, None, raw


def _text_lines(
    data: bytes, parsed: ParsedFile, encoding: str = "utf-8"
) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line; lines that do not decode become rejects."""
    for number, text, raw in _decoded_lines(data, encoding):
        if text is None:
            parsed.rejects.append(
                Reject(number, _raw_text(raw), f"line is not valid {encoding.upper()}")
            )
        elif text.strip():
            yield number, text


def _raw_text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


def _header_problem(names: Sequence[str]) -> str | None:
    if any(not name for name in names):
        return "header has an empty column name"
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        return f"header repeats columns {duplicates}"
    return None


def missing_column_issues(missing: Sequence[str]) -> list[str]:
    """The issue a record carries for each column its file lacks."""
    return [f"missing column {name}" for name in missing]


def parse_csv(
    data: bytes,
    columns: Sequence[str],
    landing: LandingFormat | None = None,
    delimiter: str | None = None,
) -> ParsedFile:
    """Delimited text, one record per line (no quoted newlines), with a header row or, as
    declared, without one (every line is then a record, named by `file_columns`)."""
    landing = landing or LandingFormat()
    delimiter = delimiter or landing.delimiter
    parsed = ParsedFile()
    header: list[str] | None = None
    if not landing.header:
        header = _named(landing.file_columns or columns, landing)
    missing: list[str] = _missing_columns(header, columns, parsed) if header else []
    header_problem = _header_problem(header) if header else None
    for number, text in _text_lines(data, parsed, landing.encoding):
        try:
            fields = _split_csv_line(text, delimiter, landing.quotechar)
        except csv.Error as error:
            parsed.rejects.append(Reject(number, text, f"malformed CSV line: {error}"))
            continue
        if header is None:
            header = _named([name.strip() for name in fields], landing)
            header_problem = _header_problem(header)
            missing = _missing_columns(header, columns, parsed)
            continue
        if header_problem:
            parsed.rejects.append(Reject(number, text, f"unusable header: {header_problem}"))
        elif len(fields) != len(header):
            parsed.rejects.append(
                Reject(number, text, f"expected {len(header)} fields, found {len(fields)}")
            )
        else:
            parsed.records.append(
                _record(number, dict(zip(header, fields, strict=True)), columns, missing)
            )
    return parsed


def _named(names: Sequence[str], landing: LandingFormat) -> list[str]:
    """Upstream names as the dataset's columns (through the declared aliases)."""
    return [landing.aliases.get(name, name) for name in names]


def _missing_columns(header: Sequence[str], columns: Sequence[str], parsed: ParsedFile) -> list:
    missing = [name for name in columns if name not in header]
    if missing:
        parsed.notes.append(f"missing columns {missing}")
    extra = [name for name in header if name not in columns]
    if extra:
        parsed.notes.append(f"extra columns {extra}")
    return missing


def _split_csv_line(text: str, delimiter: str, quotechar: str = '"') -> list[str]:
    if quotechar not in text:
        return text.split(delimiter)
    rows = list(csv.reader([text], delimiter=delimiter, quotechar=quotechar, strict=True))
    return rows[0] if rows else []


def _record(
    line: int, row: dict[str, str | None], columns: Sequence[str], missing: Sequence[str]
) -> Record:
    values = {name: row.get(name) for name in columns}
    extra = {name: value for name, value in row.items() if name not in values}
    return Record(line=line, values=values, issues=missing_column_issues(missing), extra=extra)


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, sort_keys=True)


def parse_jsonl(
    data: bytes, columns: Sequence[str], landing: LandingFormat | None = None
) -> ParsedFile:
    """One JSON object per line; absent keys are missing columns of that record."""
    landing = landing or LandingFormat()
    parsed = ParsedFile()
    for number, text in _text_lines(data, parsed, landing.encoding):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as error:
            parsed.rejects.append(Reject(number, text, f"malformed JSON line: {error.msg}"))
            continue
        if not isinstance(obj, dict):
            parsed.rejects.append(Reject(number, text, "JSON line is not an object"))
            continue
        row = {landing.aliases.get(str(k), str(k)): _as_text(v) for k, v in obj.items()}
        missing = [name for name in columns if name not in row]
        parsed.records.append(_record(number, row, columns, missing))
    return parsed


def parse_parquet(
    data: bytes, columns: Sequence[str], landing: LandingFormat | None = None
) -> ParsedFile:
    """A Parquet file; every column is read back as text. A corrupt file is one reject."""
    aliases = (landing or LandingFormat()).aliases
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as error:
        return ParsedFile(rejects=[Reject(None, None, f"unreadable Parquet file: {error}")])
    texts = {}
    for name in table.column_names:
        column = table.column(name)
        try:
            texts[aliases.get(name, name)] = column.cast(pa.string()).to_pylist()
        except (pa.ArrowException, NotImplementedError):
            texts[aliases.get(name, name)] = [_as_text(value) for value in column.to_pylist()]
    missing = [name for name in columns if name not in texts]
    parsed = ParsedFile(notes=[f"missing columns {missing}"] if missing else [])
    names = list(texts)
    for index, values in enumerate(zip(*texts.values(), strict=True) if names else []):
        parsed.records.append(
            _record(index + 1, dict(zip(names, values, strict=True)), columns, missing)
        )
    return parsed
