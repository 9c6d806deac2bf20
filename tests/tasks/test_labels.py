"""Labels land apart from their records: every line is kept, the newest usable label of a
record wins, and training rows take their label from the feed."""

from __future__ import annotations

import pandas as pd

from datasets import get_dataset
from tasks.labels import attach_labels, build_labels, known_labels, write_labels
from tasks.lake import Lake
from tasks.landing import FileContent, LandedFile

WDBC = get_dataset("wdbc")


def landed(name: str, text: str) -> FileContent:
    file = LandedFile(uri=f"mem://wdbc-labels/{name}", name=name, size=len(text))
    return FileContent(file=file, data=text.encode(), checksum="-")


def land(lake: Lake, ds: str, text: str):
    batch = build_labels.fn([landed("results.csv", text)], WDBC, ds, run_id="r")
    write_labels.fn(lake, "wdbc", ds, batch, "r")
    return batch


def test_every_label_line_is_kept_and_unusable_ones_say_why():
    text = 'id,diagnosis\n1,M\n2, B \n3,\n,M\n4,X\n"5,M\n6,M,extra\n'
    batch = build_labels.fn([landed("results.csv", text)], WDBC, "2024-07-05", run_id="r")
    rows = batch.table.to_pandas().sort_values("_line")
    assert batch.landed_rows == 7
    assert batch.usable_rows == 2
    issues = dict(zip(rows["_line"], rows["_issues"], strict=True))
    assert issues[2] is None and issues[3] is None
    assert issues[4] == "diagnosis: missing"
    assert issues[5] == "id: missing"
    assert issues[6].startswith("diagnosis: isin")
    assert rows.loc[rows["_line"] == 7, "_raw"].item() == '"5,M'
    assert "expected 2 fields" in issues[8]


def test_the_newest_usable_label_of_a_record_wins(tmp_path):
    lake = Lake(str(tmp_path))
    land(lake, "2024-07-05", "id,diagnosis\n1,M\n2,B\n")
    land(lake, "2024-07-09", "id,diagnosis\n1,B\n2,\n")  # 2's correction is unusable
    labels, version = known_labels(lake, WDBC)
    assert version is not None
    assert dict(zip(labels["id"], labels["diagnosis"], strict=True)) == {"1": "B", "2": "B"}


def test_relanding_a_labels_day_replaces_it(tmp_path):
    lake = Lake(str(tmp_path))
    land(lake, "2024-07-05", "id,diagnosis\n1,M\n")
    land(lake, "2024-07-05", "id,diagnosis\n1,B\n")
    assert lake.read("labels", "wdbc").num_rows == 1
    assert known_labels(lake, WDBC)[0]["diagnosis"].tolist() == ["B"]


def test_no_labels_table_means_no_labels(tmp_path):
    labels, version = known_labels(Lake(str(tmp_path)), WDBC)
    assert labels.empty and version is None


def test_training_rows_take_the_feed_label_else_their_own():
    silver = pd.DataFrame({"id": ["1", "2", "3"], "diagnosis": [None, "B", "M"], "x": [1, 2, 3]})
    labels = pd.DataFrame({"id": ["1", "2", "9"], "diagnosis": ["M", "M", "B"]})
    joined, from_feed = attach_labels(silver, labels, WDBC)
    assert joined["diagnosis"].tolist() == ["M", "M", "M"]
    assert joined["x"].tolist() == [1, 2, 3]
    assert from_feed == 2
