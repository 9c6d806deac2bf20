"""A landed file parsed in blocks is the file parsed whole: every block ends where a record
ends (never inside quotes), and records and rejects keep the file's own line numbers."""

from __future__ import annotations

import pytest

from datasets import LandingFormat
from tasks.blocks import record_blocks
from tasks.parsing import Reject, parse_file, parse_in_blocks

COLUMNS = ("a", "b", "c")

QUOTED = (
    b'a,b,c\n1,"x, y",3\n2,"two\nlines",4\n3,"say ""hi""\n, then go",5\n'
    b'4,plain,6\n5,"a\r\nCRLF inside",7\n'
)


def _lines(count: int) -> list[bytes]:
    """Good records, with every fifth line bad (wrong field count), one quoted line break
    and a quoted comma in every seventh."""
    lines = []
    for n in range(1, count + 1):
        if n % 5 == 0:
            lines.append(b"%d,only-two" % n)
        elif n % 7 == 0:
            lines.append(b'%d,"first\nsecond, third",%d' % (n, n))
        else:
            lines.append(b"%d,%d,%d" % (n, n, n))
    return lines


MIXED = b"a,b,c\n" + b"\n".join(_lines(300)) + b"\n"


def _in_pieces(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


@pytest.mark.parametrize("block_bytes", [7, 64, 10_000])
def test_blocks_end_only_where_records_end_and_lose_no_byte(block_bytes):
    blocks = list(record_blocks(_in_pieces(QUOTED, 5), '"', block_bytes))
    assert b"".join(block.data for block in blocks) == QUOTED
    for block in blocks:
        assert block.data.count(b'"') % 2 == 0 and block.data.endswith(b"\n")
    lines_before = [QUOTED[: QUOTED.index(block.data)].count(b"\n") for block in blocks]
    assert [block.first_line for block in blocks] == [n + 1 for n in lines_before]


def _whole_and_in_blocks(name: str, data: bytes, landing=None):
    block_bytes = 16 if len(data) < 500 else 48  # a few lines, good and bad, in each
    whole = parse_file(name, data, COLUMNS, landing)
    pieces = list(parse_in_blocks(name, _in_pieces(data, 13), COLUMNS, landing,
                                  block_bytes=block_bytes))  # fmt: skip
    return whole, pieces


def _records(parsed) -> list[dict]:
    return [row for piece in parsed if piece.table is not None for row in piece.table.to_pylist()]


@pytest.mark.parametrize(
    ("name", "data", "landing"),
    [
        ("mixed.csv", MIXED, None),
        ("quoted.csv", QUOTED, None),
        ("crlf.csv", MIXED.replace(b"\n", b"\r\n"), None),
        ("bom.csv", b"\xef\xbb\xbf\n\n" + MIXED, None),
        ("headless.csv", MIXED.split(b"\n", 1)[1], LandingFormat(header=False)),
        ("mixed.tsv", MIXED.replace(b",", b"\t"), None),
        (
            "mixed.jsonl",
            b"\n".join(b'{"a": "%d"}' % n if n % 4 else b"{broken" for n in range(1, 200)),
            None,
        ),
    ],
)
def test_a_file_parsed_in_blocks_is_the_file_parsed_whole(name, data, landing):
    whole, pieces = _whole_and_in_blocks(name, data, landing)
    assert len(pieces) > 3  # good and bad lines in every block
    assert _records(pieces) == whole.table.to_pylist()
    assert [r for piece in pieces for r in piece.rejects] == whole.rejects
    assert [note for piece in pieces for note in piece.notes] == whole.notes


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
@pytest.mark.parametrize("text", [MIXED, QUOTED], ids=["mixed", "quoted"])
def test_text_not_ascii_compatible_is_read_in_blocks_as_the_same_text_in_utf8(encoding, text):
    landing = LandingFormat(encoding=encoding)
    whole, pieces = _whole_and_in_blocks("x.csv", text.decode().encode(encoding), landing)
    as_utf8 = parse_file("x.csv", text, COLUMNS)
    assert len(pieces) > 2  # transcoded as it is read, cut into blocks
    assert _records(pieces) == whole.table.to_pylist() == as_utf8.table.to_pylist()
    assert [r for piece in pieces for r in piece.rejects] == whole.rejects == as_utf8.rejects


def test_a_utf16_line_that_does_not_decode_is_a_reject_and_the_others_are_read():
    data = MIXED.decode().encode("utf-16-le")
    unit = data.index("8,8,8".encode("utf-16-le"))
    data = data[:unit] + b"\x00\xdc" + data[unit + 2 :]  # a lone low surrogate for the "8"
    whole, pieces = _whole_and_in_blocks("x.csv", data, LandingFormat(encoding="utf-16-le"))
    for parsed in (whole.rejects, [r for piece in pieces for r in piece.rejects]):
        (bad,) = [r for r in parsed if r.line == 10]  # record 8 (record 7 takes two lines)
        assert bad.error == "line is not valid UTF-16-LE"
    records = _records(pieces)
    assert records == whole.table.to_pylist()
    assert [row["a"] for row in records if row["a"] in ("7", "8", "9")] == ["7", "9"]


def test_an_unbalanced_quote_loses_no_line_and_later_blocks_read_normally():
    lines = _lines(120)
    lines[30] = b'31,"never closed,31'
    data = b"a,b,c\n" + b"\n".join(lines) + b"\n"
    broken_at = data[: data.index(b'31,"never')].count(b"\n") + 1
    whole, pieces = _whole_and_in_blocks("broken.csv", data)
    records = _records(pieces)
    before = [row for row in whole.table.to_pylist() if row["_line"] < broken_at]
    assert [row for row in records if row["_line"] < broken_at] == before
    starts = {row["_line"] for row in records} | {r.line for p in pieces for r in p.rejects}
    assert broken_at in starts  # the broken line is a record or a reject, not lost
    assert {"a": "118", "b": "118", "c": "118"}.items() <= next(
        row for row in records if row["a"] == "118"
    ).items()  # blocks after the broken one are read as records again


def test_parquet_is_parsed_whole():
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table({"a": ["1", "2"], "b": ["x", "y"], "c": ["3", "4"]}), sink)
    data = sink.getvalue()
    (piece,) = parse_in_blocks("x.parquet", _in_pieces(data, 100), COLUMNS, block_bytes=64)
    assert piece.record_count == 2


def test_gzip_text_is_decompressed_and_parsed_in_blocks_as_it_is_read():
    import gzip

    members = gzip.compress(MIXED[:700]) + gzip.compress(MIXED[700:])  # two members
    whole, pieces = _whole_and_in_blocks("mixed.csv.gz", members)
    assert len(pieces) > 3
    assert (
        _records(pieces)
        == whole.table.to_pylist()
        == parse_file("x.csv", MIXED, COLUMNS).table.to_pylist()
    )
    assert [r for piece in pieces for r in piece.rejects] == whole.rejects


@pytest.mark.parametrize("cut", ["truncated", "corrupt"])
def test_a_gzip_stream_cut_short_keeps_what_it_read_in_blocks_as_whole(cut):
    import gzip
    import random

    from tasks.parsing import GZIP_SLICE

    numbers = random.Random(5)
    lines = [b"%d,%d,%d" % (n, numbers.getrandbits(40), n) for n in range(60_000)]
    data = gzip.compress(b"a,b,c\n" + b"\n".join(lines) + b"\n")
    at = len(data) * 2 // 3
    assert at > 2 * GZIP_SLICE  # slices of lines decompressed before the cut
    data = data[:at] if cut == "truncated" else data[:at] + b"\x00" * 40 + data[at + 40 :]
    whole = parse_file("x.csv.gz", data, COLUMNS)
    pieces = list(parse_in_blocks("x.csv.gz", _in_pieces(data, 4099), COLUMNS,
                                  block_bytes=2**16))  # fmt: skip
    assert len(pieces) > 3 and whole.record_count > 20_000
    cut_notes = [note for piece in pieces for note in piece.notes if "gzip" in note]
    assert cut_notes == [note for note in whole.notes if "gzip" in note]
    assert cut_notes[0].startswith("truncated gzip stream")
    if cut == "truncated":  # (corrupt data may decompress to garbage first: no such claim)
        assert _records(pieces) == whole.table.to_pylist()
        assert [r for piece in pieces for r in piece.rejects] == whole.rejects
        assert whole.rejects[-1].error == "incomplete last line"
    else:
        assert _records(pieces)[:20_000] == whole.table.to_pylist()[:20_000]


def test_a_file_named_gz_that_is_not_gzip_is_unreadable_in_blocks_too():
    (piece,) = parse_in_blocks("x.csv.gz", _in_pieces(MIXED, 1), COLUMNS, block_bytes=64)
    assert piece.unreadable.startswith("x.csv.gz: not gzip data")


@pytest.mark.parametrize("rows", [0, 1, 1000])
def test_a_parquet_file_read_in_batches_is_the_file_read_whole(rows):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.parsing import parse_parquet_in_batches

    sink = io.BytesIO()
    table = pa.table({"a": [str(n) for n in range(rows)], "c": list(range(rows))})  # no b
    pq.write_table(table, sink, row_group_size=300)
    whole = parse_file("x.parquet", sink.getvalue(), COLUMNS)
    pieces = list(parse_parquet_in_batches(io.BytesIO(sink.getvalue()), COLUMNS, batch_rows=128))
    assert len(pieces) >= max(1, rows // 128)  # a batch at a time
    assert _records(pieces) == whole.table.to_pylist()
    assert (
        [note for piece in pieces for note in piece.notes]
        == whole.notes
        == ["missing columns ['b']"]
    )


def test_a_parquet_file_that_does_not_read_is_one_reject_in_batches_too():
    import io

    from tasks.parsing import parse_parquet_in_batches

    (piece,) = parse_parquet_in_batches(io.BytesIO(b"PAR1 not really"), COLUMNS)
    assert piece.table is None and piece.rejects[0].error.startswith("unreadable Parquet file")


def test_a_line_that_does_not_decode_leaves_quoted_line_breaks_of_the_others_whole():
    data = MIXED.replace(b"8,8,8", b"\xff,8,8")  # record 8, right after a two-line record
    parsed = parse_file("x.csv", data, COLUMNS)
    assert [r for r in parsed.rejects if "valid" in r.error] == [
        Reject(10, "\\xff,8,8", "line is not valid UTF-8")
    ]
    seven = next(row for row in parsed.table.to_pylist() if row["a"] == "7")
    assert seven["b"] == "first\nsecond, third" and seven["_line"] == 8
    assert parsed.table.num_rows == 240 - 1 and "second" not in parsed.table.column("a").to_pylist()
