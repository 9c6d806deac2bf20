"""The labels feed: outcomes that land apart from (and usually later than) their records.

Files under `landing/{dataset}-labels/ds={ds}/` carry the dataset's row key (or `_row_id`)
and the target. They land in the `labels` table, one slice per landing day, every line
kept: a label that cannot be used (no key, no value, a value the schema refuses, a line
that does not parse) is kept with its `_issues`. Training and monitoring read the labels
known so far: the newest valid label of each record wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pandera.pandas as pandera
import pyarrow as pa
import pyarrow.compute as pc

from datasets import Dataset
from tasks import step
from tasks.bronze import TIMESTAMP
from tasks.casting import cast_series
from tasks.lake import Lake
from tasks.landing import FileContent
from tasks.parsing import parse_file
from tasks.validation import column_kind


def labels_feed(dataset: str) -> str:
    """The landing folder of a dataset's labels: `landing/{labels_feed(dataset)}/ds=…`."""
    return f"{dataset}-labels"


def labels_schema(dataset: Dataset) -> pa.Schema:
    """Key and target as landed (text), then what was wrong, the raw line, and lineage."""
    landed = [*dataset.label_key, dataset.roles.target]
    return pa.schema(
        [(name, pa.string()) for name in landed]
        + [
            ("_issues", pa.string()),
            ("_raw", pa.string()),
            ("_source", pa.string()),
            ("_line", pa.int64()),
            ("_ingested_at", TIMESTAMP),
            ("_run_id", pa.string()),
            ("ds", pa.string()),
        ]
    )


@dataclass(frozen=True)
class LabelsBatch:
    """One landing day of labels: every line read, and what was read of each file."""

    table: pa.Table
    files: list[dict]
    unreadable: list[str]

    @property
    def landed_rows(self) -> int:
        return self.table.num_rows

    @property
    def usable_rows(self) -> int:
        return self.table.num_rows - self.unusable_rows

    @property
    def unusable_rows(self) -> int:
        return self.table.num_rows - self.table.column("_issues").null_count


@step
def build_labels(
    contents: Sequence[FileContent], dataset: Dataset, ds: str, run_id: str
) -> LabelsBatch:
    """Parse every labels file of day `ds` and check each label; nothing is dropped."""
    landed = [*dataset.label_key, dataset.roles.target]
    rows: list[dict] = []
    files, unreadable = [], []
    for content in contents:
        parsed = parse_file(content.file.name, content.data, landed, dataset.labels_landing)
        files.append(
            content.receipt() | {"records": parsed.record_count, "rejects": len(parsed.rejects)}
        )
        if parsed.unreadable:
            unreadable.append(parsed.unreadable)
        for record in parsed.records:
            rows.append(
                {name: record.values.get(name) for name in landed}
                | {"_issues": record.issues, "_source": content.file.uri, "_line": record.line}
            )
        for reject in parsed.rejects:
            rows.append(
                {"_issues": [reject.error], "_raw": reject.raw_text}
                | {"_source": content.file.uri, "_line": reject.line}
            )
    frame = pd.DataFrame(rows, columns=[*landed, "_issues", "_raw", "_source", "_line"])
    frame["_issues"] = _label_issues(frame, dataset)
    frame["_ingested_at"] = datetime.now(UTC)
    frame["_run_id"] = run_id
    frame["ds"] = ds
    table = pa.Table.from_pandas(frame, schema=labels_schema(dataset), preserve_index=False)
    return LabelsBatch(table=table, files=files, unreadable=unreadable)


def _label_issues(frame: pd.DataFrame, dataset: Dataset) -> pd.Series:
    """Per row, every reason its label cannot be used (parse issues included), or None."""
    target, tokens = dataset.roles.target, dataset.labels_landing.null_tokens
    issues = [list(found) if isinstance(found, list) else [] for found in frame["_issues"]]
    parsed = frame["_raw"].isna().to_numpy()
    for name in [*dataset.label_key, target]:
        missing = cast_series(frame[name], "string", tokens).isna().to_numpy() & parsed
        for row in np.flatnonzero(missing):
            issues[row].append(f"{name}: missing")
    given = cast_series(frame[target], "string", tokens).notna().to_numpy()
    typed = _typed_labels(frame[target], dataset)
    kind = column_kind(dataset, target)
    for row in np.flatnonzero(given & typed.isna().to_numpy()):
        issues[row].append(f"{target}: not a valid {kind}")
    declared = dataset.schema.to_schema().columns[target]
    check = pandera.DataFrameSchema({target: declared}, coerce=True)
    try:
        check.validate(pd.DataFrame({target: typed.dropna()}), lazy=True)
    except pandera.errors.SchemaErrors as errors:
        for case in errors.failure_cases.dropna(subset=["index"]).itertuples():
            issues[int(case.index)].append(f"{target}: {case.check}")
    return pd.Series(["; ".join(found) or None for found in issues], index=frame.index)


def _typed_labels(text: pd.Series, dataset: Dataset) -> pd.Series:
    target = dataset.roles.target
    return cast_series(text, column_kind(dataset, target), dataset.labels_landing.null_tokens)


@step(retries=2)
def write_labels(lake: Lake, dataset: str, ds: str, batch: LabelsBatch, run_id: str) -> int:
    """Replace the labels that landed on day `ds`; returns the Delta version written."""
    return lake.replace_slice("labels", dataset, batch.table, {"ds": ds}, run_id=run_id)


def known_labels(lake: Lake, dataset: Dataset) -> tuple[pd.DataFrame, int | None]:
    """The newest usable label of each record (key columns and the typed target), and the
    labels table version read (None when no label ever landed)."""
    key, target = list(dataset.label_key), dataset.roles.target
    table = lake.table("labels", dataset.name)
    if table is None:
        return pd.DataFrame(columns=[*key, target]), None
    version = table.version()
    rows = lake.read("labels", dataset.name, version=version)
    rows = rows.filter(pc.is_null(rows.column("_issues")))
    frame = rows.select([*key, target, "ds", "_ingested_at", "_line"]).to_pandas()
    frame = frame.sort_values(["ds", "_ingested_at", "_line"], kind="stable")
    frame = frame.drop_duplicates(subset=key, keep="last")
    labels = pd.DataFrame({target: _typed_labels(frame[target], dataset).to_numpy()})
    for name in key:
        kind = "string" if name == "_row_id" else column_kind(dataset, name)
        labels[name] = cast_series(frame[name], kind).to_numpy()
    return labels[[*key, target]].reset_index(drop=True), version


def attach_labels(
    frame: pd.DataFrame, labels: pd.DataFrame, dataset: Dataset
) -> tuple[pd.DataFrame, int]:
    """`frame` with the target taken from the labels feed where it has a label for the row
    (the feed is the later truth), else as it landed; and how many rows the feed labelled."""
    key, target = list(dataset.label_key), dataset.roles.target
    if labels.empty or frame.empty:
        return frame, 0
    joined = frame.merge(
        labels.rename(columns={target: "_feed_label"}), on=key, how="left", validate="many_to_one"
    )
    from_feed = joined["_feed_label"].notna()
    joined[target] = joined["_feed_label"].where(from_feed, joined[target])
    return joined.drop(columns="_feed_label"), int(from_feed.sum())


def labelled_days(lake: Lake, dataset: Dataset, batch: LabelsBatch) -> list[str]:
    """The silver days holding a record that `batch` gives a usable label."""
    key = list(dataset.label_key)
    usable = batch.table.filter(pc.is_null(batch.table.column("_issues")))
    silver = lake.read("silver", dataset.name, columns=[*key, "ds"])
    if usable.num_rows == 0 or silver.num_rows == 0:
        return []
    labelled = pa.table(
        {
            name: cast_series(usable.column(name).to_pandas(), _key_kind(dataset, name))
            for name in key
        }
    )
    silver_keys = silver.select(key).cast(labelled.schema, safe=False)
    matched = silver.filter(_rows_in(silver_keys, labelled))
    return sorted(set(matched.column("ds").to_pylist()))


def _key_kind(dataset: Dataset, name: str) -> str:
    return "string" if name == "_row_id" else column_kind(dataset, name)


def _rows_in(rows: pa.Table, keys: pa.Table) -> pa.Array:
    """Per row of `rows`, whether its key (all columns) is among `keys`."""
    if rows.num_columns == 1:
        return pc.is_in(rows.column(0), value_set=keys.column(0).combine_chunks())
    wanted = set(zip(*(keys.column(i).to_pylist() for i in range(keys.num_columns)), strict=True))
    found = zip(*(rows.column(i).to_pylist() for i in range(rows.num_columns)), strict=True)
    return pa.array([key in wanted for key in found])
