"""The landing zone lists what landed for a day, reads only what is inside it, and says
which files it skipped."""

from __future__ import annotations

import os

import pytest

from tasks.landing import LinkOutOfLanding, list_landed_files


@pytest.fixture
def landing(tmp_path):
    day = tmp_path / "landing" / "adult" / "ds=2024-01-01"
    day.mkdir(parents=True)
    (day / "a.csv").write_text("age\n39\n")
    return tmp_path / "landing"


def test_a_link_out_of_the_landing_zone_is_refused_naming_it_and_its_target(landing, tmp_path):
    secret = tmp_path / "elsewhere" / "passwd.csv"
    secret.parent.mkdir()
    secret.write_text("age\n1\n")
    os.symlink(secret, landing / "adult" / "ds=2024-01-01" / "b.csv")
    with pytest.raises(LinkOutOfLanding, match=r"ds=2024-01-01/b.csv is a link to .*passwd.csv"):
        list_landed_files(str(landing), "adult", "2024-01-01")


def test_a_link_within_the_landing_zone_is_read(landing):
    other = landing / "adult" / "shared.csv"
    other.write_text("age\n40\n")
    os.symlink(other, landing / "adult" / "ds=2024-01-01" / "b.csv")
    files, _ = list_landed_files(str(landing), "adult", "2024-01-01")
    assert [(file.name, file.size) for file in files] == [("a.csv", 7), ("b.csv", 7)]


def test_hidden_and_marker_files_are_skipped_and_listed(landing):
    day = landing / "adult" / "ds=2024-01-01"
    for name in ("_SUCCESS", "..csv", ".upload.csv.tmp"):
        (day / name).write_text("age\n1\n")
    files, skipped = list_landed_files(str(landing), "adult", "2024-01-01")
    assert [file.name for file in files] == ["a.csv"]
    assert sorted(skipped) == ["..csv", ".upload.csv.tmp", "_SUCCESS"]


def content(uri: str, data: bytes):
    import hashlib

    from tasks.landing import FileContent, LandedFile

    file = LandedFile(uri, uri.rsplit("/", 1)[-1], len(data))
    return FileContent(file, data, hashlib.sha256(data).hexdigest())


def test_duplicate_files_are_left_out_naming_what_they_duplicate():
    from tasks.landing import without_duplicates

    a, b = content("ds=2/a.csv", b"age\n39\n"), content("ds=2/b.csv", b"age\n39\n")
    c, d = content("ds=2/c.csv", b"age\n40\n"), content("ds=2/d.csv", b"age\n41\n")
    e, f = content("ds=2/e.csv", b""), content("ds=2/f.csv", b"")
    earlier = {d.checksum: "ds=1 ds=1/x.csv"}
    kept, duplicates = without_duplicates([a, b, c, d, e, f], earlier)
    assert [k.file.name for k in kept] == ["a.csv", "c.csv", "e.csv", "f.csv"]  # empty: no rows
    assert [(x["path"], x["same_as"]) for x in duplicates] == [
        ("ds=2/b.csv", "ds=2/a.csv"),
        ("ds=2/d.csv", "ds=1 ds=1/x.csv"),
    ]
    assert duplicates[0]["sha256"] == a.checksum and duplicates[0]["size"] == 7
