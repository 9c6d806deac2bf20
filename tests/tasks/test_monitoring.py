"""The monitor's view of a scored day, read a batch at a time: every silver row with its
score and label, text as categories (a day of 10M rows as Python strings took 5 GB) whatever
the files' dictionaries; and the sample of features Evidently's report reads."""

from __future__ import annotations

import pyarrow as pa

from datasets import adult, get_dataset, row_id
from datasets.landing_writer import encode_landing_file
from tasks.monitoring import load_scored_day, scored_sample

DS = "2024-01-01"


def landed_csv(race: str, seed: int) -> str:
    frame = adult.synthesize(40, seed=seed)
    frame = frame[[column for column in frame.columns if not column.startswith("_")]]
    return encode_landing_file(frame.assign(race=race), "csv").decode()


def test_a_day_of_files_with_different_categories_is_read_with_scores_labels_and_sampled(
    validated_day,
):
    spec = get_dataset("adult")
    lake, landed = validated_day([("a.csv", landed_csv("White", 1)),
                                  ("b.csv", landed_csv("Black", 2))], DS)  # fmt: skip
    silver = lake.read("silver", "adult", {"ds": DS}, columns=["_row_id", "income"])
    assert len(lake.table("silver", "adult").file_uris()) == 2  # a file per landed file
    ids = silver.column("_row_id").to_pylist()
    scores = [index / len(ids) for index in range(len(ids))]
    predictions = pa.table({"_row_id": ids, "score": scores, "ds": [DS] * len(ids),
                            "model_version": ["v1"] * len(ids)})  # fmt: skip
    lake.replace_slice("predictions", "adult", predictions, {"ds": DS, "model_version": "v1"},
                       run_id="s")  # fmt: skip

    day = load_scored_day(lake, spec, DS, "v1")  # in silver's order, as `ids`
    assert "_row_id" not in day.columns  # 0.8 GB of str at 10M rows, read by nothing after
    assert load_scored_day(lake, spec, DS, "v1", row_ids=True)["_row_id"].tolist() == ids
    assert len(day) == landed == 80
    assert day["score"].tolist() == scores
    assert day["race"].dtype == "category" and set(day["race"]) == {"White", "Black"}
    incomes = silver.column("income").to_pylist()
    assert day["label"].tolist() == [float(income == ">50K") for income in incomes]
    assert day["age_band"].notna().all()

    sample = scored_sample(lake, spec, DS, "v1", rows=30)
    smallest = sorted(ids, key=lambda row: int(row, 16))[:30]  # ids are hashes: uniform
    score_of = dict(zip(ids, scores, strict=True))
    assert sample["score"].tolist() == [score_of[row] for row in smallest]
    assert list(sample.columns) == [*spec.roles.features, "score"]
    assert sample["race"].dtype == "category" and len(sample) == 30
    whole = scored_sample(lake, spec, DS, "v1", rows=1_000)
    assert len(whole) == 80 and sorted(whole["score"]) == scores


def test_scores_are_found_by_id_whatever_the_shape_of_the_ids():
    from tasks.monitoring import _ScoresById

    spelled = [row_id("adult", DS, "a.csv", line) for line in (2, 3, 4)]
    for predicted, asked in [
        (spelled, [spelled[2], "by hand", spelled[0]]),  # a silver id no prediction spells
        (["x", "y", "z"], ["z", "w", "x"]),  # ids named by hand, looked up by their text
        ([], spelled[:2]),  # nothing scored yet
    ]:
        scores = _ScoresById(pa.table({"_row_id": pa.array(predicted, pa.string()),
                                       "score": [0.1, 0.2, 0.3][: len(predicted)]}))  # fmt: skip
        found, scored = scores.of(pa.chunked_array([pa.array(asked, pa.string())]))
        expected = [predicted.index(i) for i in asked if i in predicted]
        assert scored.tolist() == [i in predicted for i in asked]
        assert found.tolist() == [[0.1, 0.2, 0.3][i] for i in expected]


def test_the_sample_of_a_day_without_a_scored_row_is_empty(validated_day):
    lake, _ = validated_day([("a.csv", landed_csv("White", 1))], DS)
    sample = scored_sample(lake, get_dataset("adult"), DS, "v1", rows=30)
    assert sample.empty


def test_ids_of_another_shape_are_sampled_by_a_hash_of_their_text():
    from tasks.monitoring import _sampling_keys

    spelled = [row_id("adult", DS, "a.csv", line) for line in (2, 3)]
    assert _sampling_keys(pa.array(spelled)).tolist() == [int(i, 16) for i in spelled]
    named = [*spelled, "by hand"]
    hashed = _sampling_keys(pa.array(named)).tolist()
    assert len(set(hashed)) == 3
    assert _sampling_keys(pa.chunked_array([pa.array(named)])).tolist() == hashed
