"""Parsing landed bytes into records of strings, keeping every line it cannot parse.

Each format yields `ParsedFile`: its records as an Arrow table (one string column per
dataset column, the physical line or row number each came from, its issues and unexpected
fields) and rejects (the raw text of each line that could not be read as a row, and why).
Delimited text is read by Arrow (`tasks.arrow_csv`); the lines Arrow rejects, and files it
cannot read as declared, are read line by line here. Typing is validation's job.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from datasets import LandingFormat
from tasks.arrow_csv import NOT_BLANK, NotArrowReadable, line_bounds, read_delimited
from tasks.blocks import ASCII_COMPATIBLE, BLOCK_BYTES, occurrences, record_blocks


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


RECORD_FIELDS = [("_line", pa.int64()), ("_issues", pa.string()), ("_extra", pa.string())]
"""What a parsed record carries besides its values: where it starts, the issues of its
reading ("; "-joined) and the fields the dataset does not know (a JSON object)."""


def records_schema(columns: Sequence[str]) -> pa.Schema:
    return pa.schema([(name, pa.string()) for name in columns] + RECORD_FIELDS)


@dataclass
class ParsedFile:
    table: pa.Table | None = None  # the records (records_schema); None: no record
    rejects: list[Reject] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unreadable: str | None = None  # why the whole file was not read (no record counted)

    @property
    def record_count(self) -> int:
        return self.table.num_rows if self.table is not None else 0

    @property
    def records(self) -> list[Record]:
        """The records one by one (for small files: labels, fixes)."""
        if self.table is None:
            return []
        columns = self.table.column_names[: -len(RECORD_FIELDS)]
        return [
            Record(
                line=row["_line"],
                values={name: row[name] for name in columns},
                issues=row["_issues"].split("; ") if row["_issues"] else [],
                extra=json.loads(row["_extra"]) if row["_extra"] else {},
            )
            for row in self.table.to_pylist()
        ]


def records_table(records: Sequence[Record], columns: Sequence[str]) -> pa.Table:
    """Records read one by one, as a table of `records_schema(columns)`."""
    return pa.Table.from_pydict(
        {name: [record.values.get(name) for record in records] for name in columns}
        | {
            "_line": [record.line for record in records],
            "_issues": ["; ".join(record.issues) or None for record in records],
            "_extra": [
                json.dumps(record.extra, sort_keys=True) if record.extra else None
                for record in records
            ],
        },
        schema=records_schema(columns),
    )


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
    cut_short = ParsedFile()
    if name.lower().endswith(".gz"):
        if data and not data.startswith(GZIP_MAGIC):
            return ParsedFile(
                unreadable=f"{name}: not gzip data ({len(data):,} bytes, starting "
                f"{data[:24].decode('utf-8', 'replace')!r}); recompress it, or land it "
                "without .gz"
            )
        stream = Gunzipped([data])
        data = b"".join(stream)  # a cut stream stops at its last line break
        cut_short = stream.cut_short() if stream.truncated else cut_short
    if fmt not in ("csv", "tsv", "jsonl", "parquet"):
        return ParsedFile(unreadable=f"{name}: unknown file kind {fmt!r} declared")
    declared = landing.encoding
    if fmt != "parquet" and not _ascii_compatible(declared):
        data, landing = b"".join(as_utf8([data], declared)), replace(landing, encoding="utf-8")
    parsed = _in_declared_encoding(_parse_data(fmt, data, columns, landing, optional), declared)
    parsed.notes = cut_short.notes + parsed.notes
    parsed.rejects.extend(cut_short.rejects)
    return parsed


def _parse_data(
    fmt: str, data: bytes, columns: Sequence[str], landing: LandingFormat, optional: Sequence[str]
) -> ParsedFile:
    """Records and rejects of `data` (not compressed), a file of kind `fmt`."""
    if not NOT_BLANK.search(data):
        parsed = ParsedFile(notes=["empty file"])
    elif fmt in ("csv", "tsv"):
        parsed = parse_csv(data, columns, landing, delimiter="\t" if fmt == "tsv" else None)
    elif fmt == "jsonl":
        parsed = parse_jsonl(data, columns, landing)
    else:
        parsed = parse_parquet(data, columns, landing)
    return _with_optional(parsed, optional)


def _with_optional(parsed: ParsedFile, optional: Sequence[str]) -> ParsedFile:
    """`parsed` without the issues of the `optional` columns it lacks."""
    if parsed.table is not None and optional:
        parsed.table = _without_issues(parsed.table, missing_column_issues(optional))
    return parsed


def parse_in_blocks(
    name: str,
    chunks: Iterable[bytes],
    columns: Sequence[str],
    landing: LandingFormat | None = None,
    optional: Sequence[str] = (),
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[ParsedFile]:
    """`parse_file` of a file read in `chunks`, one block of whole records at a time (see
    `tasks.blocks`): its records and rejects carry the file's own line numbers, its notes
    come with the first block that has them. Memory is bounded by the block, whatever the
    file's size. Gzip text is decompressed as it is read. Files no cut can split (Parquet,
    an encoding that is not ASCII-compatible) are parsed whole."""
    landing = landing or LandingFormat()
    fmt = landing.kind_of(name)
    chunks, gzipped, not_gzip = iter(chunks), False, False
    if name.lower().endswith(".gz"):
        start = _start_of(chunks)
        chunks = itertools.chain([start], chunks)
        gzipped = start.startswith(GZIP_MAGIC)
        not_gzip = not gzipped  # `parse_file` names it unreadable
    if fmt not in ("csv", "tsv", "jsonl") or not_gzip:
        yield parse_file(name, b"".join(chunks), columns, landing, optional)
        return
    text = Gunzipped(chunks) if gzipped else chunks
    declared, utf8_text = landing.encoding, text
    if not _ascii_compatible(declared):  # no cut in UTF-16 text can be found by its bytes
        utf8_text, landing = as_utf8(text, declared), replace(landing, encoding="utf-8")
    with_header = fmt != "jsonl" and landing.header
    header, header_lines, noted = b"", 0, set()
    for block in record_blocks(utf8_text, landing.quotechar if fmt != "jsonl" else None,
                               block_bytes):  # fmt: skip
        parsed = _parse_data(fmt, header + block.data, columns, landing, optional)
        parsed = _in_declared_encoding(parsed, declared)
        if with_header and not header:
            header, header_lines = _header_of(block.data, landing.encoding)
            shift = block.first_line - 1
        else:
            shift = block.first_line - 1 - header_lines
        new_notes = [note for note in parsed.notes if note not in noted]
        if block.first_line > 1:
            new_notes = [note for note in new_notes if note != "empty file"]
        noted.update(new_notes)
        parsed.notes = new_notes
        yield _shifted(parsed, shift) if shift else parsed
    if gzipped and text.truncated:
        yield text.cut_short()


def _ascii_compatible(encoding: str) -> bool:
    """Whether a byte 0x0A of text in `encoding` is always a line break (and 0x22 a quote),
    so that its records can be cut apart by their bytes."""
    return encoding.lower() in ASCII_COMPATIBLE


def _undecodable(error: UnicodeDecodeError) -> tuple[str, int]:
    """Each byte that does not decode as a lone surrogate: encoded with `surrogatepass`,
    a sequence no UTF-8 reader accepts, so its line is a reject and never a character."""
    return "".join(chr(0xDC00 + byte) for byte in error.object[error.start : error.end]), error.end


codecs.register_error("tidewater-undecodable", _undecodable)


def as_utf8(chunks: Iterable[bytes], encoding: str) -> Iterator[bytes]:
    """Text in `encoding` as UTF-8, a chunk at a time (the same lines, quotes and
    delimiters; memory holds a chunk); a byte that does not decode makes its line one that
    UTF-8 rejects."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="tidewater-undecodable")
    for chunk in chunks:
        yield decoder.decode(chunk).encode("utf-8", "surrogatepass")
    yield decoder.decode(b"", final=True).encode("utf-8", "surrogatepass")


def _in_declared_encoding(parsed: ParsedFile, declared: str) -> ParsedFile:
    """`parsed` (of text transcoded from `declared` to UTF-8) with its rejects naming the
    encoding the file was declared in."""
    if _ascii_compatible(declared):
        return parsed
    transcoded = "line is not valid UTF-8"
    parsed.rejects = [
        replace(r, error=f"line is not valid {declared.upper()}") if r.error == transcoded else r
        for r in parsed.rejects
    ]
    return parsed


def _start_of(chunks: Iterator[bytes]) -> bytes:
    """The first bytes of `chunks` (at least two, unless the file is shorter)."""
    start = b""
    while len(start) < len(GZIP_MAGIC) and (chunk := next(chunks, None)) is not None:
        start += chunk
    return start


def _header_of(data: bytes, encoding: str) -> tuple[bytes, int]:
    """The bytes of `data` up to and including its header line (a BOM and blank lines
    before it included), and their line count; nothing while no header was seen."""
    start = len(BOM) if data.startswith(BOM) else 0
    try:
        found = _header_line(data, start, encoding)
    except NotArrowReadable:
        found = None
    if found is None:
        return b"", 0
    line, _, after = found
    return data[:after], line


def _shifted(parsed: ParsedFile, lines: int) -> ParsedFile:
    """`parsed` with every line number `lines` further into the file."""
    if parsed.table is not None:
        position = parsed.table.schema.get_field_index("_line")
        shifted = pc.add(parsed.table.column("_line"), lines)
        parsed.table = parsed.table.set_column(position, "_line", shifted)
    parsed.rejects = [
        Reject(None if r.line is None else r.line + lines, r.raw_text, r.error)
        for r in parsed.rejects
    ]
    return parsed


def _without_issues(table: pa.Table, allowed: Sequence[str]) -> pa.Table:
    """`table` with the issues in `allowed` dropped from each record's `_issues`."""
    issues = table.column("_issues")
    kept = {}
    for text in pc.unique(issues).to_pylist():
        if text is not None:
            left = [issue for issue in text.split("; ") if issue not in allowed]
            kept[text] = "; ".join(left) or None
    if all(text == left for text, left in kept.items()):
        return table
    texts = pa.array(list(kept), pa.string())
    lefts = pa.array(list(kept.values()), pa.string())
    index = table.schema.get_field_index("_issues")
    return table.set_column(index, "_issues", pc.take(lefts, pc.index_in(issues, texts)))


GZIP_MAGIC = b"\x1f\x8b"
GZIP_SLICE = 64 * 2**10


class Gunzipped:
    """The decompressed bytes of a gzip stream (all members) read in `chunks`, a piece of
    at most `BLOCK_BYTES` at a time. When the stream is cut short or corrupt, what follows
    its last line break is not given (a row cut mid-value is never trusted): `truncated`
    says why, `tail` holds that cut line and `cut_short()` reports both. The stream is
    decompressed `GZIP_SLICE` compressed bytes at a time, however it was read: zlib drops
    what a call decompressed before it met corrupt data, so a corrupt stream loses the
    same lines, a slice's worth at most, read whole or in pieces."""

    def __init__(self, chunks: Iterable[bytes]):
        self.chunks = chunks
        self.compressed = 0
        self.truncated: str | None = None
        self.tail = b""
        self.line_breaks = 0  # in the bytes given

    def __iter__(self) -> Iterator[bytes]:
        member, held = None, b""
        for piece in self._slices():
            while piece:
                member = member or zlib.decompressobj(16 + zlib.MAX_WBITS)
                try:
                    out = member.decompress(piece, BLOCK_BYTES)
                except zlib.error as error:
                    self.truncated = f"truncated gzip stream: corrupt data ({error})"
                    break
                piece = member.unused_data if member.eof else member.unconsumed_tail
                member = None if member.eof else member
                ends = held + out
                cut = ends.rfind(b"\n") + 1
                held = ends[cut:]
                if cut:
                    self.line_breaks += occurrences(ends, b"\n", 0, cut)
                    yield ends[:cut]
            if self.truncated:
                break
        if member is not None and not self.truncated:
            self.truncated = f"truncated gzip stream after {self.compressed} compressed bytes"
        if self.truncated:
            self.tail = held
        elif held:
            yield held

    def _slices(self) -> Iterator[bytes]:
        carry = b""
        for chunk in self.chunks:
            self.compressed += len(chunk)
            data = carry + chunk if carry else chunk
            whole = len(data) - len(data) % GZIP_SLICE
            for start in range(0, whole, GZIP_SLICE):
                yield data[start : start + GZIP_SLICE]
            carry = data[whole:]
        if carry:
            yield carry

    def cut_short(self) -> ParsedFile:
        """The truncation as a note and a reject of the file, and the line it cut as a
        reject of its own."""
        rejects = [Reject(None, None, self.truncated)]
        if self.tail.strip():
            rejects.append(
                Reject(self.line_breaks + 1, _raw_text(self.tail), "incomplete last line")
            )
        return ParsedFile(rejects=rejects, notes=[self.truncated])


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
    """Delimited text with a header row or, as declared, without one (every line is then a
    record, named by `file_columns`). Quoted fields may hold delimiters and line breaks.
    Arrow reads the file; the records it rejects are read again line by line, and a file it
    cannot read as declared (bytes not valid in its encoding, an unusable header) is read
    line by line whole, so every line that is not a record is a reject with its reason."""
    landing = landing or LandingFormat()
    delimiter = delimiter or landing.delimiter
    try:
        return _parse_csv_with_arrow(data, columns, landing, delimiter)
    except NotArrowReadable:
        pass
    readable, undecodable = _undecodable_lines_blanked(data, landing)
    if undecodable:  # Arrow reads the rest, quoted line breaks and all
        try:
            parsed = _parse_csv_with_arrow(readable, columns, landing, delimiter)
        except NotArrowReadable:
            pass
        else:
            parsed.rejects = sorted(undecodable + parsed.rejects, key=lambda r: r.line or 0)
            return parsed
    return _parse_csv_lines(data, columns, landing, delimiter)


def _undecodable_lines_blanked(data: bytes, landing: LandingFormat) -> tuple[bytes, list[Reject]]:
    """`data` with each line after the header that does not decode emptied (its line break
    kept, so later lines keep their numbers), and those lines as rejects; none when the
    header does not decode."""
    lines = data.splitlines(keepends=True)
    rejects, header_seen = [], not landing.header
    for number, line in enumerate(lines, start=1):
        try:
            text = line.decode(landing.encoding)
        except UnicodeDecodeError:
            if not header_seen:
                return data, []
            body = line.rstrip(b"\r\n")
            rejects.append(
                Reject(number, _raw_text(body), f"line is not valid {landing.encoding.upper()}")
            )
            lines[number - 1] = line[len(body) :]
            continue
        header_seen = header_seen or bool(text.strip())
    return b"".join(lines), rejects


BOM = b"\xef\xbb\xbf"


def _parse_csv_with_arrow(
    data: bytes, columns: Sequence[str], landing: LandingFormat, delimiter: str
) -> ParsedFile:
    start = len(BOM) if data.startswith(BOM) else 0
    first_line = 1
    if landing.header:
        header = _header_line(data, start, landing.encoding)
        if header is None:
            return ParsedFile()
        line, text, start = header
        try:
            fields = _split_csv_line(text, delimiter, landing.quotechar)
        except csv.Error as error:
            raise NotArrowReadable(f"header: {error}") from error
        names, first_line = _named([name.strip() for name in fields], landing), line + 1
    else:
        names = _named(landing.file_columns or columns, landing)
    if _header_problem(names):
        raise NotArrowReadable(f"header: {_header_problem(names)}")
    parsed = ParsedFile()
    missing = _missing_columns(names, columns, parsed)
    read = read_delimited(
        data, start, names, first_line, delimiter, landing.quotechar, landing.encoding
    )
    table = _as_records(read.rows, read.lines, columns, missing)
    again = []
    for reject in read.rejects:
        if "\n" in reject.text or "\r" in reject.text:
            again.append(reject)
        else:
            error = f"expected {reject.expected} fields, found {reject.found}"
            parsed.rejects.append(Reject(reject.line, reject.text, error))
    if again:
        # a record Arrow read over several lines and rejected (an unbalanced quote runs to
        # the end of the file): each of its lines is a record or a reject of its own
        records: list[Record] = []
        for reject in again:
            lines = enumerate(reject.text.splitlines(), start=reject.line)
            _csv_records(lines, names, missing, delimiter, landing, columns, records, parsed)
        table = pa.concat_tables([table, records_table(records, columns)])
    parsed.table = table
    return parsed


LINE_END = re.compile(rb"\r\n|\r|\n")


def _header_line(data: bytes, start: int, encoding: str) -> tuple[int, str, int] | None:
    """The first non-blank line from byte `start`: (line number, text, where the next line
    starts); None when there is none."""
    number, position = 1, start
    while position < len(data):
        end = LINE_END.search(data, position)
        stop, after = (end.start(), end.end()) if end else (len(data), len(data))
        try:
            text = data[position:stop].decode(encoding)
        except UnicodeDecodeError as error:
            raise NotArrowReadable(f"header: {error}") from error
        if text.strip():
            return number, text, after
        number, position = number + 1, after
    return None


def _as_records(
    rows: pa.Table, lines: pa.Array, columns: Sequence[str], missing: Sequence[str]
) -> pa.Table:
    """Rows of text (one column per file column) starting at `lines`, as a records table."""
    count, names = len(lines), rows.column_names
    issues = "; ".join(missing_column_issues(missing)) or None
    extra_names = [name for name in names if name not in columns]
    extra = None
    if extra_names:
        values = zip(*(rows.column(name).to_pylist() for name in extra_names), strict=True)
        extra = [json.dumps(dict(sorted(zip(extra_names, row, strict=True)))) for row in values]
    return pa.table(
        [rows.column(name) if name in names else pa.nulls(count, pa.string()) for name in columns]
        + [
            lines,
            pa.array([issues] * count, pa.string()),
            pa.array(extra if extra is not None else [None] * count, pa.string()),
        ],
        schema=records_schema(columns),
    )


def _parse_csv_lines(
    data: bytes, columns: Sequence[str], landing: LandingFormat, delimiter: str
) -> ParsedFile:
    """Delimited text read line by line: one record per line (no quoted line breaks)."""
    parsed = ParsedFile()
    records: list[Record] = []
    lines = _text_lines(data, parsed, landing.encoding)
    if landing.header:
        header = None
        for number, text in lines:
            try:
                header = _named(
                    [name.strip() for name in _split_csv_line(text, delimiter, landing.quotechar)],
                    landing,
                )
            except csv.Error as error:
                parsed.rejects.append(Reject(number, text, f"malformed CSV line: {error}"))
                continue
            break
        if header is None:
            parsed.table = records_table(records, columns)
            return parsed
    else:
        header = _named(landing.file_columns or columns, landing)
    missing = _missing_columns(header, columns, parsed)
    _csv_records(lines, header, missing, delimiter, landing, columns, records, parsed)
    parsed.table = records_table(records, columns)
    return parsed


def _csv_records(lines, header, missing, delimiter, landing, columns, records, parsed) -> None:
    """Each (number, text) line as a record of `header`'s fields into `records`, or a
    reject into `parsed`."""
    header_problem = _header_problem(header)
    for number, text in lines:
        if not text.strip():
            continue
        try:
            fields = _split_csv_line(text, delimiter, landing.quotechar)
        except csv.Error as error:
            parsed.rejects.append(Reject(number, text, f"malformed CSV line: {error}"))
            continue
        if header_problem:
            parsed.rejects.append(Reject(number, text, f"unusable header: {header_problem}"))
        elif len(fields) != len(header):
            parsed.rejects.append(
                Reject(number, text, f"expected {len(header)} fields, found {len(fields)}")
            )
        else:
            records.append(
                _record(number, dict(zip(header, fields, strict=True)), columns, missing)
            )


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
    """One JSON object per line; absent keys are missing columns of that record. Arrow reads
    the file; to Arrow an absent key and a null look alike, so a line holding a null is read
    again by itself, and a file Arrow cannot read (a malformed line, a key whose type
    changes, keys the dataset does not know) is read line by line."""
    landing = landing or LandingFormat()
    try:
        return _parse_jsonl_with_arrow(data, columns, landing)
    except NotArrowReadable:
        return _parse_jsonl_lines(data, columns, landing)


def _parse_jsonl_with_arrow(
    data: bytes, columns: Sequence[str], landing: LandingFormat
) -> ParsedFile:
    if codecs.lookup(landing.encoding).name != "utf-8":
        raise NotArrowReadable(f"{landing.encoding}: Arrow reads JSON as UTF-8 only")
    start = len(BOM) if data.startswith(BOM) else 0
    body = pa.py_buffer(data).slice(start)
    try:
        rows = pajson.read_json(pa.BufferReader(body))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise NotArrowReadable(str(error)) from error
    names = [landing.aliases.get(name, name) for name in rows.column_names]
    if len(set(names)) != len(names) or any(name not in columns for name in names):
        raise NotArrowReadable("keys the dataset does not know")
    starts, ends = line_bounds(np.frombuffer(body, dtype=np.uint8))
    lines = np.flatnonzero(ends > starts)
    if len(lines) != rows.num_rows:
        raise NotArrowReadable(f"{rows.num_rows} objects on {len(lines)} non-blank lines")
    texts = {name: _as_texts(column) for name, column in zip(names, rows.columns, strict=True)}
    with_null = np.zeros(rows.num_rows, dtype=bool)
    for text in texts.values():
        with_null |= pc.is_null(text).to_numpy(zero_copy_only=False)
    parsed = ParsedFile()
    missing = [name for name in columns if name not in names]
    kept = pa.array(~with_null)
    table = _as_records(
        pa.table({name: text.filter(kept) for name, text in texts.items()}),
        pa.array(lines[~with_null] + 1, pa.int64()),
        columns,
        missing,
    )
    again = [
        (int(line) + 1, data[start + starts[line] : start + ends[line]].decode())
        for line in lines[with_null]
    ]
    records = _json_records(again, columns, landing, parsed)
    parsed.table = pa.concat_tables([table, records_table(records, columns)])
    if again:
        parsed.table = parsed.table.sort_by("_line")
    return parsed


def _as_texts(column: pa.ChunkedArray) -> pa.Array:
    """A typed column (JSON, Parquet) as text: cast by Arrow, else each value as `_as_text`
    writes it (nested values as JSON)."""
    column = column.combine_chunks()
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowException, NotImplementedError):
        return pa.array(map(_as_text, column.to_pylist()), pa.string())


def _parse_jsonl_lines(data: bytes, columns: Sequence[str], landing: LandingFormat) -> ParsedFile:
    parsed = ParsedFile()
    records = _json_records(_text_lines(data, parsed, landing.encoding), columns, landing, parsed)
    parsed.table = records_table(records, columns)
    return parsed


def _json_records(lines, columns, landing, parsed) -> list[Record]:
    """Each (number, text) line as a record, or a reject into `parsed`."""
    records = []
    for number, text in lines:
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
        records.append(_record(number, row, columns, missing))
    return records


def parse_parquet(
    data: bytes, columns: Sequence[str], landing: LandingFormat | None = None
) -> ParsedFile:
    """A Parquet file; every column is read back as text. A corrupt file is one reject."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as error:
        return ParsedFile(rejects=[Reject(None, None, f"unreadable Parquet file: {error}")])
    return _parquet_rows(table, columns, landing or LandingFormat(), first_line=1)


PARQUET_BATCH_ROWS = 1 << 17
"""Rows of a Parquet file read at once when it is read in batches."""


def parse_parquet_in_batches(
    handle: BinaryIO,
    columns: Sequence[str],
    landing: LandingFormat | None = None,
    optional: Sequence[str] = (),
    batch_rows: int = PARQUET_BATCH_ROWS,
) -> Iterator[ParsedFile]:
    """`parse_parquet` of a Parquet file open for reading, `batch_rows` rows at a time:
    memory holds a batch, whatever the file's size. Its rows keep their place in the file
    (`_line`); a file that stops reading is one reject, after the rows read before."""
    landing, first_line = landing or LandingFormat(), 1
    try:
        file = pq.ParquetFile(handle)
        for batch in file.iter_batches(batch_size=batch_rows):
            parsed = _parquet_rows(pa.Table.from_batches([batch]), columns, landing, first_line)
            parsed.notes = parsed.notes if first_line == 1 else []
            first_line += batch.num_rows
            yield _with_optional(parsed, optional)
        if first_line == 1:  # no row: the file's columns still count
            yield _with_optional(
                _parquet_rows(file.schema_arrow.empty_table(), columns, landing, 1), optional
            )
    except (pa.ArrowException, OSError) as error:
        yield ParsedFile(rejects=[Reject(None, None, f"unreadable Parquet file: {error}")])


def _parquet_rows(
    table: pa.Table, columns: Sequence[str], landing: LandingFormat, first_line: int
) -> ParsedFile:
    """Rows of a Parquet file, the first at row `first_line` of it, every column as text."""
    aliases = landing.aliases
    texts = {aliases.get(name, name): _as_texts(table.column(name)) for name in table.column_names}
    missing = [name for name in columns if name not in texts]
    parsed = ParsedFile(notes=[f"missing columns {missing}"] if missing else [])
    rows = pa.table(texts) if texts else pa.table({})
    lines = pa.array(range(first_line, first_line + table.num_rows), pa.int64())
    parsed.table = _as_records(rows, lines, columns, missing)
    return parsed
