"""Shadow IO: a day scored by both the champion and the challenger, the shadow days recorded
for a challenger, and the day's shadow page."""

from __future__ import annotations

import pandas as pd

from datasets import Dataset
from reports.shadow import ShadowDay
from tasks import step
from tasks.lake import Lake
from tasks.ledger import read_ledger
from tasks.monitoring import load_scored_day, report_folder
from tasks.storage import LOCAL, Store


@step(retries=2)
def load_shadow_day(
    lake: Lake, dataset: Dataset, ds: str, champion: str, challenger: str
) -> pd.DataFrame:
    """The day's rows with `champion_score` and `challenger_score` (the same rows, from one
    scoring pass), `label` where known and the protected attributes."""
    frame = load_scored_day(lake, dataset, ds, champion, row_ids=True)
    frame = frame.rename(columns={"score": "champion_score"})
    challenger_scores = lake.read(
        "predictions",
        dataset.name,
        where={"ds": ds, "model_version": challenger},
        columns=["_row_id", "score"],
    ).to_pandas()
    if challenger_scores.empty:
        raise LookupError(f"{dataset.name} ds={ds} was not scored by challenger {challenger}")
    challenger_scores = challenger_scores.rename(columns={"score": "challenger_score"})
    return frame.merge(challenger_scores, on="_row_id", how="inner", validate="one_to_one")


def recorded_shadow_days(lake: Lake, dataset: str, challenger: str) -> list[ShadowDay]:
    """The shadow days recorded for `challenger` (the latest comparison of each day),
    oldest first."""
    ledger = read_ledger(lake, dataset)
    if ledger.empty:
        return []
    mine = ledger[
        (ledger["stage"] == "shadow")
        & (ledger["status"] == "succeeded")
        & (ledger["model_version"] == challenger)
    ]
    latest = mine.groupby("ds", sort=True).tail(1)
    return [ShadowDay.from_json(details["day"]) for details in latest["details"]]


@step(retries=2)
def save_shadow_page(
    reports_uri: str,
    dataset: str,
    ds: str,
    html: str,
    store: Store = LOCAL,
) -> str:
    """Write the day's `shadow.html`; returns its URI."""
    uri = f"{report_folder(reports_uri, dataset, ds)}/shadow.html"
    fs, path = store.filesystem(uri)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, html.encode())
    return uri
