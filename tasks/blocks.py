"""Landed text files read in blocks that end where a record ends, so that a file of any size
is parsed with bounded memory and every record is parsed whole, in one block.

A line break ends a record unless it is inside a quoted field. In delimited text where a
quote inside a quoted field is doubled (RFC 4180), a line break is inside quotes exactly
when an odd number of quote characters precede it since the last record boundary; a block
is cut after the last line break with an even count. JSON lines hold no raw line break in a value:
every line break ends a record. A block with no such line break (an unbalanced quote runs
past its end) is cut after its last line break all the same: the quoted run is then read
line by line by the parser, as it is at the end of a file, and the next block starts afresh.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

BLOCK_BYTES = 16 * 2**20
"""Bytes of landed text parsed at once (a block holds whole records: a little more or less)."""

# Encodings in which a byte 0x0A is always a line break and 0x22 always a quote: a cut
# there never splits a character. Text in other encodings (UTF-16, ...) is transcoded to
# UTF-8 as it is read (`tasks.parsing.as_utf8`).
ASCII_COMPATIBLE = {"utf-8", "utf8", "utf-8-sig", "ascii", "latin-1", "latin1", "iso-8859-1",
                    "cp1252", "windows-1252"}  # fmt: skip


@dataclass(frozen=True)
class Block:
    data: bytes
    first_line: int  # the physical line number (from 1) of the block's first byte


def record_blocks(
    chunks: Iterable[bytes], quotechar: str | None = '"', block_bytes: int = BLOCK_BYTES
) -> Iterator[Block]:
    """The bytes of `chunks` (a file read in pieces of any size) as blocks of about
    `block_bytes` that each end after a record; `quotechar` None: no quoting (JSON lines).
    A record longer than a block makes its block longer, up to `UNBALANCED_AFTER` blocks:
    then it is taken for an unbalanced quote and cut at a line break."""
    quote = quotechar.encode() if quotechar else None
    pending, line = b"", 1
    for chunk in chunks:
        pending += chunk
        while len(pending) >= block_bytes:
            cut = _record_end(pending, quote, block_bytes)
            if cut is None:
                break  # the record goes on past what was read: read on
            block, pending = pending[:cut], pending[cut:]
            yield Block(block, line)
            line += line_breaks(block)
    if pending:
        yield Block(pending, line)


UNBALANCED_AFTER = 4


def line_breaks(data: bytes) -> int:
    """Line breaks in `data` as the parser counts lines: `\r\n`, `\r` or `\n` (a block never
    ends between the two bytes of `\r\n`: it is cut after a `\n`)."""
    breaks = occurrences(data, b"\n")
    if b"\r" in data:  # (a search, at memory speed)
        breaks += data.count(b"\r") - data.count(b"\r\n")
    return breaks


def occurrences(data: bytes, byte: bytes, start: int = 0, end: int | None = None) -> int:
    """How many times `byte` occurs in `data[start:end]`, counted by numpy (`bytes.count`
    of one byte goes a byte at a time: a third of ingest's time went to it)."""
    if len(byte) != 1:
        return data.count(byte, start, len(data) if end is None else end)
    view = np.frombuffer(data, dtype=np.uint8)[start:end]
    return int(np.count_nonzero(view == ord(byte)))


def _record_end(data: bytes, quote: bytes | None, near: int) -> int | None:
    """Where a block of `data` about `near` bytes long ends: just after the line break
    outside quotes nearest `near` (the last one before it, else the first one after it);
    None when `data` holds none yet."""
    first_after = data.find(b"\n", near - 1)
    end = first_after if first_after >= 0 else data.rfind(b"\n")
    if end < 0:
        return None
    if quote is None:
        return end + 1
    quotes_before_end = occurrences(data, quote, 0, end)
    candidate, quotes = end, quotes_before_end
    while quotes % 2:  # inside quotes: step back to the previous line break
        previous = data.rfind(b"\n", 0, candidate)
        if previous < 0:
            break
        quotes -= data.count(quote, previous, candidate)
        candidate = previous
    if quotes % 2 == 0:
        return candidate + 1
    candidate, quotes = end, quotes_before_end  # the first record is longer: step forward
    while quotes % 2:
        following = data.find(b"\n", candidate + 1)
        if following < 0:
            if len(data) < UNBALANCED_AFTER * near:
                return None
            return data.rfind(b"\n") + 1  # an unbalanced quote: cut anyway (module note)
        quotes += data.count(quote, candidate, following)
        candidate = following
    return candidate + 1
