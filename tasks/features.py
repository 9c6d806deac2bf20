"""From typed rows to the model's dense float32 feature matrix, through the encode kernel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from kernels.encode import build_lookup, encode


@dataclass(frozen=True)
class FeatureSpec:
    """The model's inputs in order: numeric columns, then categoricals coded by vocabulary."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    vocabulary: Mapping[str, tuple[str, ...]]

    @property
    def names(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    def to_json(self) -> dict:
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "vocabulary": {name: list(values) for name, values in self.vocabulary.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping) -> FeatureSpec:
        return cls(
            numeric=tuple(data["numeric"]),
            categorical=tuple(data["categorical"]),
            vocabulary={name: tuple(values) for name, values in data["vocabulary"].items()},
        )


def learn_feature_spec(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> FeatureSpec:
    """The vocabulary of each categorical column as seen in training data, sorted."""
    vocabulary = {
        name: tuple(sorted(str(v) for v in frame[name].dropna().unique())) for name in categorical
    }
    return FeatureSpec(tuple(numeric), tuple(categorical), vocabulary)


def _as_arrow(frame: pd.DataFrame | pa.Table, name: str) -> pa.ChunkedArray:
    if isinstance(frame, pa.Table):
        return frame.column(name)
    return pa.chunked_array([pa.array(frame[name], from_pandas=True)])


def _dictionary(column: pa.ChunkedArray) -> pa.DictionaryArray:
    """The column as one dictionary array (Parquet dictionary pages are used as they are)."""
    if pa.types.is_dictionary(column.type):
        return column.unify_dictionaries().combine_chunks()
    return pc.cast(column, pa.string()).combine_chunks().dictionary_encode()


def feature_matrix(frame: pd.DataFrame | pa.Table, spec: FeatureSpec, device: str = "cpu"):
    """The (rows, features) float32 matrix of `frame`; NaN for missing and unknown values."""
    numeric = []
    for name in spec.numeric:
        column = pc.cast(_as_arrow(frame, name), pa.float32())
        numeric.append(column.combine_chunks().to_numpy(zero_copy_only=False))
    categorical = []
    for name in spec.categorical:
        encoded = _dictionary(_as_arrow(frame, name))
        codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
        lookup = build_lookup(encoded.dictionary.to_pylist(), spec.vocabulary[name])
        categorical.append((codes, lookup))
    return encode(numeric, categorical, device=device)
