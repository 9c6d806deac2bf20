"""Every kind of bad landed file ends as records or rejects with a reason: nothing is lost."""

from __future__ import annotations

import gzip
import io

import pyarrow as pa
import pyarrow.parquet as pq

from datasets import LandingFormat
from tasks.parsing import parse_file

COLUMNS = ("a", "b", "c")


def parse(name: str, data: bytes):
    return parse_file(name, data, COLUMNS)


def test_good_csv_records_keep_line_numbers():
    parsed = parse("x.csv", b"a,b,c\n1,2,3\n\n4,5,6\n")
    assert [r.line for r in parsed.records] == [2, 4]
    assert parsed.records[1].values == {"a": "4", "b": "5", "c": "6"}
    assert parsed.rejects == []


def test_malformed_csv_lines_are_rejected_with_their_raw_text():
    data = b'a,b,c\n1,2,3\n1,2\n1,2,3,4\n"unterminated,2,3\n7,8,9\n'
    parsed = parse("x.csv", data)
    assert [r.line for r in parsed.records] == [2, 6]
    assert [(r.line, r.raw_text) for r in parsed.rejects] == [
        (3, "1,2"),
        (4, "1,2,3,4"),
        (5, '"unterminated,2,3'),
    ]
    assert "expected 3 fields, found 2" in parsed.rejects[0].error


def test_quoted_commas_are_one_field():
    parsed = parse("x.csv", b'a,b,c\n"x, y",2,3\n')
    assert parsed.records[0].values["a"] == "x, y"


def test_non_utf8_lines_are_rejected_and_the_rest_kept():
    data = b"a,b,c\n1,2,3\n\xff\xfe,2,3\n4,5,6\n"
    parsed = parse("x.csv", data)
    assert [r.line for r in parsed.records] == [2, 4]
    assert parsed.rejects[0].line == 3
    assert parsed.rejects[0].error == "line is not valid UTF-8"
    assert "\\xff" in parsed.rejects[0].raw_text


def test_missing_column_is_an_issue_of_every_record():
    parsed = parse("x.csv", b"a,b\n1,2\n")
    assert parsed.records[0].values == {"a": "1", "b": "2", "c": None}
    assert parsed.records[0].issues == ["missing column c"]
    assert "missing columns ['c']" in parsed.notes


def test_extra_column_is_kept_aside():
    parsed = parse("x.csv", b"a,b,c,d\n1,2,3,4\n")
    assert parsed.records[0].values == {"a": "1", "b": "2", "c": "3"}
    assert parsed.records[0].extra == {"d": "4"}
    assert parsed.records[0].issues == []


def test_empty_and_header_only_files_have_no_rows():
    assert parse("x.csv", b"").records == []
    assert parse("x.csv", b"").notes == ["empty file"]
    assert parse("x.csv", b"a,b,c\n").records == []


def test_duplicate_header_rejects_every_line():
    parsed = parse("x.csv", b"a,a,c\n1,2,3\n")
    assert parsed.records == []
    assert "header repeats columns" in parsed.rejects[0].error


def test_gzip_csv_and_truncated_gzip():
    text = b"a,b,c\n" + b"".join(b"%d,2,3\n" % i for i in range(2000))
    whole = gzip.compress(text)
    assert len(parse("x.csv.gz", whole).records) == 2000
    truncated = parse("x.csv.gz", whole[: len(whole) // 2])
    assert 0 < len(truncated.records) < 2000
    assert any("truncated gzip" in r.error for r in truncated.rejects)


def test_a_plain_file_named_gz_is_unreadable_with_its_size_not_a_truncated_stream():
    parsed = parse("x.csv.gz", b"a,b,c\n1,2,3\n")
    assert parsed.records == [] and parsed.rejects == []
    assert parsed.unreadable.startswith("x.csv.gz: not gzip data (12 bytes, starting 'a,b,c")


def test_json_lines_with_bad_lines_and_missing_keys():
    data = b'{"a": 1, "b": "x", "c": null}\nnot json\n[1, 2]\n{"a": 2.0, "b": "y"}\n'
    parsed = parse("x.jsonl", data)
    assert [r.values for r in parsed.records] == [
        {"a": "1", "b": "x", "c": None},
        {"a": "2", "b": "y", "c": None},
    ]
    assert parsed.records[1].issues == ["missing column c"]
    assert [r.line for r in parsed.rejects] == [2, 3]


def test_parquet_is_read_as_text_and_corrupt_parquet_is_one_reject():
    buffer = io.BytesIO()
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", None], "c": [1.5, 2.0]}), buffer)
    parsed = parse("x.parquet", buffer.getvalue())
    assert [r.values for r in parsed.records] == [
        {"a": "1", "b": "x", "c": "1.5"},
        {"a": "2", "b": None, "c": "2"},
    ]
    corrupt = parse("x.parquet", b"PAR1 not really")
    assert corrupt.records == [] and "unreadable Parquet" in corrupt.rejects[0].error


def test_an_undeclared_file_kind_is_unreadable_with_its_size_not_a_reject():
    parsed = parse("german.data", b"x" * 1234)
    assert parsed.records == [] and parsed.rejects == []
    assert parsed.unreadable.startswith("german.data: undeclared file kind (1,234 bytes)")


HEADERLESS = LandingFormat(kinds={".data": "csv"}, delimiter=" ", header=False)


def test_a_headerless_file_reads_every_line_as_a_record():
    parsed = parse_file("german.data", b"1 2 3\n4 5 6\n7 8\n", COLUMNS, HEADERLESS)
    assert [r.line for r in parsed.records] == [1, 2]
    assert parsed.records[0].values == {"a": "1", "b": "2", "c": "3"}
    assert [(r.line, r.error) for r in parsed.rejects] == [(3, "expected 3 fields, found 2")]


def test_file_columns_name_headerless_fields_in_file_order():
    landing = LandingFormat(header=False, file_columns=("c", "a", "b"))
    parsed = parse_file("x.csv", b"3,1,2\n", COLUMNS, landing)
    assert parsed.records[0].values == {"a": "1", "b": "2", "c": "3"}


def test_upstream_names_map_to_dataset_columns_through_aliases():
    landing = LandingFormat(aliases={"A_upstream": "a", "bee": "b"})
    parsed = parse_file("x.csv", b"A_upstream,bee,c\n1,2,3\n", COLUMNS, landing)
    assert parsed.records[0].values == {"a": "1", "b": "2", "c": "3"} and not parsed.notes
    jsonl = parse_file("x.jsonl", b'{"A_upstream": 1, "bee": 2, "c": 3}\n', COLUMNS, landing)
    assert jsonl.records[0].values == {"a": "1", "b": "2", "c": "3"}


def test_a_declared_encoding_decodes_text_and_quote_character_applies():
    landing = LandingFormat(encoding="latin-1", delimiter=";", quotechar="'")
    parsed = parse_file("x.csv", "a;b;c\nGöteborg;'x;y';3\n".encode("latin-1"), COLUMNS, landing)
    assert parsed.records[0].values == {"a": "Göteborg", "b": "x;y", "c": "3"}
    as_utf8 = parse_file("x.csv", "a;b;c\nGöteborg;2;3\n".encode("latin-1"), COLUMNS)
    assert as_utf8.rejects[0].error == "line is not valid UTF-8"


def test_an_optional_column_may_be_absent_without_an_issue():
    parsed = parse_file("x.csv", b"a,b\n1,2\n", COLUMNS, optional=("c",))
    assert parsed.records[0].values == {"a": "1", "b": "2", "c": None}
    assert parsed.records[0].issues == []
    strict = parse_file("x.csv", b"a,b\n1,2\n", COLUMNS)
    assert strict.records[0].issues == ["missing column c"]


def test_quoted_line_breaks_and_delimiters_are_one_record_on_the_line_it_starts():
    data = b'a,b,c\r\n\r\n1,"x\r\ny, z",3\r\n\r\n4,"5\n\n5",6\r\n7,8\r\n9,"",""\n'
    parsed = parse("x.csv", data)
    assert [(r.line, r.values["b"]) for r in parsed.records] == [
        (3, "x\r\ny, z"),
        (6, "5\n\n5"),
        (10, ""),
    ]
    assert [(r.line, r.raw_text) for r in parsed.rejects] == [(9, "7,8")]


def test_an_unbalanced_quote_is_one_reject_and_the_lines_after_it_are_read():
    data = b'a,b,c\n1,2,3\n4,"5,6\n7,8,9\n1,2\n'
    parsed = parse("x.csv", data)
    assert [(r.line, r.values["a"]) for r in parsed.records] == [(2, "1"), (4, "7")]
    assert [(r.line, r.raw_text) for r in parsed.rejects] == [(3, '4,"5,6'), (5, "1,2")]


def _line_by_line(data: bytes):
    from tasks.parsing import _parse_csv_lines

    return _parse_csv_lines(data, COLUMNS, LandingFormat(), ",")


def test_a_large_file_with_bad_lines_throughout_reads_as_it_does_line_by_line(monkeypatch):
    kinds = [b"%d,x,y", b"%d,short", b"", b"   ", b"%d,1,2,3", b"%d,,", b"%d,x,y", b"%d,x,y"]
    lines = [b"a,b,c"] + [
        kinds[i * 7 % 11 % len(kinds)].replace(b"%d", b"%d" % i) for i in range(60_000)
    ]
    for ending in (b"\n", b"\r\n", b"\r"):
        data = ending.join(lines) + ending
        expected = _line_by_line(data)
        with monkeypatch.context() as patch:
            patch.setattr("tasks.parsing._parse_csv_lines", _refused)
            by_arrow = parse("x.csv", data)
        assert by_arrow.table.equals(expected.table)
        assert by_arrow.rejects == expected.rejects
        assert by_arrow.record_count > 20_000 and len(by_arrow.rejects) > 10_000


def test_arrow_and_line_by_line_agree_on_files_without_quoted_line_breaks(monkeypatch):
    lines = [b"a,b,c", b"1,2,3", b"", b"4,5", b"  ", b"6,7,8,9", b'"x, y",2,3', b"1,2,3"]
    for cut in range(1, len(lines) + 1):
        data = b"\n".join(lines[:cut]) + b"\n"
        expected = _line_by_line(data)
        with monkeypatch.context() as patch:
            patch.setattr("tasks.parsing._parse_csv_lines", _refused)
            by_arrow = parse("x.csv", data)
        assert by_arrow.table.equals(expected.table), cut
        assert by_arrow.rejects == expected.rejects, cut


def _refused(*args):
    raise AssertionError("read line by line whole, not by Arrow")


def test_json_lines_read_by_arrow_as_they_read_line_by_line(monkeypatch):
    from tasks.parsing import _parse_jsonl_lines

    objects = [
        b'{"a": %d, "b": %s, "c": %s}'
        % (i, [b"true", b"false"][i % 2], [b"1.5", b"2.0", b"null", b"-0.25"][i % 4])
        for i in range(3000)
    ]
    objects[10] = b'{"a": 5, "b": true}'
    objects[11] = b""
    data = b"\n".join(objects) + b"\n"
    expected = _parse_jsonl_lines(data, COLUMNS, LandingFormat())
    with monkeypatch.context() as patch:
        patch.setattr("tasks.parsing._parse_jsonl_lines", _refused)
        by_arrow = parse("x.jsonl", data)
    assert by_arrow.table.equals(expected.table)
    assert by_arrow.rejects == expected.rejects == []
    records = by_arrow.records
    assert records[10].issues == ["missing column c"] and records[2].values["c"] is None
    assert records[1].values == {"a": "1", "b": "false", "c": "2"}
    assert records[11].line == 13 and records[11].values["c"] == "1.5"


def test_json_lines_arrow_cannot_read_are_read_line_by_line():
    data = b'{"a": 1}\n{"a": "now text"}\nnot json\n{"a": 2, "zzz": 3}\n'
    parsed = parse("x.jsonl", data)
    assert [(r.line, r.values["a"], r.extra) for r in parsed.records] == [
        (1, "1", {}),
        (2, "now text", {}),
        (4, "2", {"zzz": "3"}),
    ]
    assert [(r.line, r.error) for r in parsed.rejects] == [
        (3, "malformed JSON line: Expecting value")
    ]
