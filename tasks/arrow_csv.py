"""Delimited text read by Arrow's CSV reader, each record with the line it starts on.

Arrow parses the records (quoted delimiters and newlines included) in C++; this module adds
what ingest needs and Arrow does not give: the physical line each record starts on (for
`_line` and `_row_id`) and the records Arrow rejects, with their ordinal, so the caller can
hand exactly those to the line-level parser. Arrow numbers rejected records only when it
reads on one thread: a file is read on all threads first, and read again on one only if
some record was rejected.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

LINE_BREAK = r"\r\n|\r|\n"
NOT_BLANK = re.compile(rb"\S")


@dataclass(frozen=True)
class ArrowReject:
    """A record Arrow could not read as a row: its first line, raw text and field count."""

    line: int
    text: str
    expected: int
    found: int


@dataclass(frozen=True)
class ArrowRead:
    """The rows Arrow read (one string column per name), the line each starts on, and the
    records it rejected."""

    rows: pa.Table
    lines: pa.Array
    rejects: list[ArrowReject]


class NotArrowReadable(ValueError):
    """Arrow cannot read this text as declared (bytes not valid in its encoding, a layout
    the line numbering does not follow): the caller reads it line by line instead."""


def read_delimited(
    data: bytes,
    start: int,
    names: Sequence[str],
    first_line: int,
    delimiter: str,
    quotechar: str,
    encoding: str,
) -> ArrowRead:
    """The records of `data` from byte `start` (the text after its header, which starts on
    physical line `first_line` of the file), every field as text. Blank lines are skipped,
    as are lines of whitespace only."""
    if "\n".encode(encoding, errors="replace") != b"\n":
        raise NotArrowReadable(f"{encoding}: line breaks are not single bytes")
    body = pa.py_buffer(data).slice(start)
    if not NOT_BLANK.search(data, start):
        empty = pa.schema([(name, pa.string()) for name in names]).empty_table()
        return ArrowRead(empty, pa.array([], pa.int64()), [])
    quoted = data.find(quotechar.encode(encoding), start) >= 0
    rows, rejected = _read(body, names, delimiter, quotechar, encoding, quoted, threads=True)
    if rejected:
        rows, rejected = _read(body, names, delimiter, quotechar, encoding, quoted, threads=False)
    starts = _record_lines(body, rows, rejected, quoted) + first_line
    rejected_ordinals = np.array([number - 1 for number, _, _, _ in rejected], dtype=np.int64)
    kept = np.ones(len(starts), dtype=bool)
    kept[rejected_ordinals] = False
    rejects = [
        ArrowReject(int(starts[number - 1]), text, expected, found)
        for number, text, expected, found in rejected
        if text.strip()
    ]
    return ArrowRead(rows, pa.array(starts[kept], pa.int64()), rejects)


def _read(body, names, delimiter, quotechar, encoding, quoted: bool, threads: bool):
    """Arrow's rows and its rejected records as (1-based ordinal or None, text, expected
    fields, found fields)."""
    rejected: list[tuple] = []

    def keep_aside(row) -> str:
        rejected.append((row.number, row.text, row.expected_columns, row.actual_columns))
        return "skip"

    try:
        rows = pacsv.read_csv(
            pa.BufferReader(body),
            read_options=pacsv.ReadOptions(
                column_names=list(names), use_threads=threads, encoding=_arrow_encoding(encoding)
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char=quotechar,
                newlines_in_values=quoted,
                invalid_row_handler=keep_aside,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError, LookupError) as error:
        raise NotArrowReadable(str(error)) from error
    if not threads and any(number is None for number, *_ in rejected):
        raise NotArrowReadable("Arrow did not number a rejected record")
    return rows, rejected


def _arrow_encoding(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    return "utf8" if name == "utf-8" else name


def _record_lines(body: pa.Buffer, rows: pa.Table, rejected: list, quoted: bool) -> np.ndarray:
    """The line (0-based, from the body's start) each record starts on, in Arrow's order."""
    content = np.frombuffer(body, dtype=np.uint8)
    nonempty = _nonempty_lines(content)
    records = rows.num_rows + len(rejected)
    spans = _spans(rows, rejected) if quoted else None
    if spans is None or (spans == 1).all():
        if len(nonempty) != records:
            raise NotArrowReadable(f"{records} records on {len(nonempty)} non-blank lines")
        return nonempty
    return _walk(spans, nonempty, records)


def _nonempty_lines(content: np.ndarray) -> np.ndarray:
    """0-based indexes of the lines holding at least one byte (line breaks: \\n, \\r\\n, \\r)."""
    starts, ends = line_bounds(content)
    return np.flatnonzero(ends > starts)


def line_bounds(content: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each line of `content` starts and where its text ends (before its line break:
    \\n, \\r\\n or \\r), as byte offsets."""
    breaks = content == 10
    carriage_returns = content == 13
    if not carriage_returns.any():  # \n only, the common case
        ends = np.flatnonzero(breaks)
        return np.concatenate(([0], ends + 1)), np.concatenate((ends, [len(content)]))
    crlf = np.zeros(len(content), dtype=bool)
    crlf[:-1] = carriage_returns[:-1] & breaks[1:]
    breaks |= carriage_returns & ~crlf
    ends = np.flatnonzero(breaks)
    starts = np.concatenate(([0], ends + 1))
    return starts, np.concatenate((ends - crlf[ends - 1] * (ends > 0), [len(content)]))


def _spans(rows: pa.Table, rejected: list) -> np.ndarray:
    """How many physical lines each record covers, in ordinal order."""
    breaks = np.zeros(rows.num_rows, dtype=np.int64)
    for column in rows.columns:
        breaks += pc.count_substring_regex(column, LINE_BREAK).to_numpy(zero_copy_only=False)
    spans = np.ones(rows.num_rows + len(rejected), dtype=np.int64)
    rejected_ordinals = [number - 1 for number, *_ in rejected]
    kept = np.ones(len(spans), dtype=bool)
    kept[rejected_ordinals] = False
    spans[kept] += breaks
    for ordinal, (_, text, _, _) in zip(rejected_ordinals, rejected, strict=True):
        spans[ordinal] += len(text.splitlines()) - 1 if text else 0
    return spans


def _walk(spans: np.ndarray, nonempty: np.ndarray, records: int) -> np.ndarray:
    """Record start lines when records cover several lines: each starts on the first
    non-blank line after the previous record's last."""
    past_the_end = int(nonempty[-1]) + 1 if len(nonempty) else 0
    lines = np.full(past_the_end + int(spans.sum()) + 1, past_the_end, dtype=np.int64)
    lines[nonempty] = nonempty
    # each line's next non-blank line at or after it (past_the_end where none is left)
    next_nonempty = np.minimum.accumulate(lines[::-1])[::-1]
    starts = np.empty(records, dtype=np.int64)
    line = int(next_nonempty[0])
    for ordinal in range(records):
        if line >= past_the_end:
            raise NotArrowReadable("records run past the last line")
        starts[ordinal] = line
        line = int(next_nonempty[line + spans[ordinal]])
    return starts
