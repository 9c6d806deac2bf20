"""Breast Cancer Wisconsin (Diagnostic): the second worked example, declared only.

An upstream lab system drops one headerless, space-separated `.data` file per batch:
`id diagnosis f1 … f30`, where `diagnosis` is `M` (malignant) or `B` (benign) and may be
absent (`?`) when the pathology result is not in yet. Nothing else is needed: no loader,
no generator; `tidewater train wdbc --start D --days N` and `tidewater run wdbc --ds D` work
from the files alone.

Wolberg, W., Mangasarian, O., Street, N. & Street, W. (1993). Breast Cancer Wisconsin
(Diagnostic) [Dataset]. UCI Machine Learning Repository. https://doi.org/10.24432/C5DW2B
— CC BY 4.0. (The rows ship with scikit-learn as `sklearn.datasets.load_breast_cancer`.)
"""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

from datasets.base import Dataset, DatasetModel, FeatureRoles, LandingFormat

MEASURES = ("radius", "texture", "perimeter", "area", "smoothness", "compactness",
            "concavity", "concave_points", "symmetry", "fractal_dimension")  # fmt: skip
FEATURES = tuple(f"{m}_{stat}" for stat in ("mean", "se", "worst") for m in MEASURES)
COLUMNS = ("id", "diagnosis", *FEATURES)


# Thirty measures (lengths, areas, ratios: never negative), declared from one list.
WdbcSchema = type(
    "WdbcSchema",
    (DatasetModel,),
    {
        "__doc__": "A diagnosed (or not yet diagnosed) sample: its id and thirty measures.",
        "__annotations__": {
            "id": Series[str],
            "diagnosis": Series[str],
            **{name: Series[float] for name in FEATURES},
        },
        "id": pa.Field(str_matches=r"^\d+$"),
        "diagnosis": pa.Field(isin=("M", "B"), nullable=True),
        **{name: pa.Field(ge=0) for name in FEATURES},
    },
)

DATASET = Dataset(
    name="wdbc",
    columns=COLUMNS,
    schema=WdbcSchema,
    roles=FeatureRoles(
        numeric=FEATURES,
        categorical=(),
        target="diagnosis",
        positive_label="M",
        identifiers=("id",),
    ),
    landing=LandingFormat(
        kinds={".data": "csv"}, delimiter=" ", header=False, null_tokens=("", "?")
    ),
    # pathology results arrive later, as `id,diagnosis` CSV files under landing/wdbc-labels/
    row_key=("id",),
    citation=__doc__.split("\n\n")[2],
)
