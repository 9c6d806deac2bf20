"""The compiled forest: flat node arrays, derived kernel layouts, and .npz save/load.

Layout (what `Forest` stores, for all kernels)
-----------------------------------------------
Trees are stored one after another in XGBoost's order (the order margins are summed in, which
is what makes the CPU twin bit-exact). Within a tree, nodes are renumbered breadth-first from
the root so that the two children of a node are adjacent: `right = left + 1`, one child index per
node. Arrays are structure-of-arrays over all nodes, `tree_offsets[t]:tree_offsets[t + 1]` being
tree `t`, and child indices are local to their tree (so one tree is a self-contained block of a
few KB that stays in L1 cache or shared memory while a block of rows passes through it).

A leaf points to itself (`left_child[i] == i`) and can never send a row right, so every tree is
walked in exactly `tree_depths[t]` branch-free steps with no "is this a leaf?" test: rows that
reach a shallow leaf simply stay there. This compact breadth-first layout is used instead of a
perfect (complete) tree because its size follows the real node count: XGBoost trees of depth
10-12 are far from complete, and a perfect tree of depth 12 would be 8191 nodes per tree.

Which CPU algorithm, and why (measured on the 2-core x86-64 VM, 2 threads)
--------------------------------------------------------------------------
Default-parameter XGBoost models (min_child_weight=1) are sparse: on the benchmark suite
(`benchmarks/forest.py`) Adult trees of max depth 8 have 152 nodes (a complete tree: 511) and
a mean leaf depth of 7.0. But the rows go where the data is, and the data sits on the deep
paths: a scored row visits 7.82 nodes per tree (depth 6: 5.95, depth 10: 9.53; HIGGS-like
7.99 / 6.00 / 9.89; wide sparse 7.95 / 5.99 / 9.82). So a walk of `tree_depths[t]` fixed steps
does at most 5% more steps than an early-exit walk on these models, and an exit test per lane
and step (or a lane that refills with a new row on reaching a leaf) costs more than that.
QuickScorer / RapidScorer evaluate every node whose test is false for a row: measured, 33 per
tree for Adult depth 8 and 86 for HIGGS-like (against 7.8 and 8.0 visits), and their trees have
76 and 171 leaves, more than one 64-bit leaf mask: 4-11x the work of the walk. What the walk on
real models paid for instead was the cost of each step, so that is what the layout cuts:

- Key walk (the default, `KeyLayout`). A block of rows is copied once (the copy counted in
  our time, ~1-3% of it) into order-preserving uint32 keys of the used columns, interleaved
  by lane (`keys[group][column][lane]`, 8 lanes), so that a lane's value is one load at a
  constant offset from one base register. Missing values get the largest key, and each
  node stores the key A of its threshold and a span B chosen so that a row goes right iff
  `(key - A) mod 2**64 < B`: one subtraction and one unsigned compare decide the step, with
  the missing-value direction and XGBoost's `x < threshold` rule (ties go right, -0.0 ==
  +0.0, +-inf ordinary values) included. A node is 16 bytes (A, B, column, child). The inner
  loop compiles to 12 instructions per lane and step, with the 8 lanes' node indices in
  registers, against 17 with spills for the float walk below (two float compares for the
  NaN rule, a row pointer per lane). Measured, paired, 200k rows of the suite:
  1.41x the float walk's speed on Adult depth 8, 1.52x depth 6, 1.58x HIGGS-like depth 8,
  1.53x wide sparse depth 8; all bit-identical. Blocks hold up to 64 KiB of keys (at most
  1024 rows): every tree is read once per block and the whole forest (1-5 MB) does not fit
  in L2, so large blocks amortise fetching it (measured 1.3x on HIGGS-like depth 10 against
  16 KiB blocks), while the 256-column wide model keeps 64-row blocks.
- Float walk (`lane_nodes`, method "lanes"): the same lock-step walk straight on the float32
  input; the previous default, kept as a reference.
- Binned walk (`BinnedLayout`, method "binned"): thresholds turned into uint16 bins,
  `x < cuts[j]  <=>  bin <= j`; the quantisation (a binary search per value) costs more than
  the key transform and the walk is no faster than the key walk.

Kernels read derived packings of the same arrays, built once per forest:
- CPU: `KeyLayout` (default), `lane_nodes`, `BinnedLayout` (above).
- GPU: one 16-byte record per node (one 128-bit load per step), staged in shared memory when a
  chunk of trees fits. Rows walk in lock-step too, so the same measurement applies: a warp
  stops a tree once all its rows rest on leaves (a warp vote per step), which bounds its
  cost by the deepest path its rows take, not the tree's depth; on the suite that saves
  little, as above, and keeps divergence out (every thread runs the same steps).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_NAME = "tidewater-forest"
FORMAT_VERSION = 1
OBJECTIVES = ("binary:logistic", "reg:logistic", "reg:squarederror")

# uint16 bins: values get 0..n_cuts, NaN gets NAN_BIN, NEVER_BIN is never produced.
NAN_BIN = 0xFFFF
NEVER_BIN = 0xFFFE
MAX_CUTS_PER_FEATURE = 0xFFFD
MAX_LOCAL_NODES = 0xFFFF

_ARRAY_FIELDS = (
    "tree_offsets",
    "tree_depths",
    "feature",
    "threshold",
    "default_left",
    "left_child",
    "leaf_value",
)


class ForestFormatError(ValueError):
    """A saved forest file is unreadable, of an unknown version, or fails its checksum."""


@dataclass(frozen=True, eq=False)
class Forest:
    """A compiled tree ensemble (see the module docstring for the layout).

    Arrays, over all nodes of all trees (`n_nodes` in total):
      feature       int32   split feature, -1 for a leaf
      threshold     float32 go left iff x < threshold (NaN for a leaf)
      default_left  uint8   1 when a missing value goes left
      left_child    int32   local index of the left child (right = left + 1); a leaf: itself
      leaf_value    float32 value of a leaf, 0 for a split
    and per tree: `tree_offsets` int64 (n_trees + 1) and `tree_depths` int32 (n_trees).
    """

    n_features: int
    objective: str
    base_score: float
    base_margin: np.float32
    tree_offsets: np.ndarray
    tree_depths: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    default_left: np.ndarray
    left_child: np.ndarray
    leaf_value: np.ndarray
    feature_names: tuple[str, ...] | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in _ARRAY_FIELDS:
            arr = getattr(self, name)
            if not arr.flags.c_contiguous or arr.flags.writeable:
                arr = np.ascontiguousarray(arr).copy()
                arr.flags.writeable = False
                object.__setattr__(self, name, arr)
        object.__setattr__(self, "base_margin", np.float32(self.base_margin))

    @property
    def n_trees(self) -> int:
        """Number of trees."""
        return int(self.tree_depths.shape[0])

    @property
    def n_nodes(self) -> int:
        """Number of nodes over all trees."""
        return int(self.feature.shape[0])

    @property
    def max_depth(self) -> int:
        """Depth of the deepest tree (0 for a forest of single leaves or no trees)."""
        return int(self.tree_depths.max()) if self.n_trees else 0

    @property
    def is_logistic(self) -> bool:
        """True when probabilities are the sigmoid of margins."""
        return self.objective in ("binary:logistic", "reg:logistic")

    def cached(self, key: str, build: Any) -> Any:
        """A derived structure computed once per forest by `build(self)`."""
        if key not in self._cache:
            self._cache[key] = build(self)
        return self._cache[key]

    # -- persistence ---------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        """The JSON header saved with the arrays (checksum excluded)."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "n_features": int(self.n_features),
            "n_trees": self.n_trees,
            "n_nodes": self.n_nodes,
            "objective": self.objective,
            "base_score": float(self.base_score),
            "base_margin_bits": int(np.float32(self.base_margin).view(np.uint32)),
            "feature_names": list(self.feature_names) if self.feature_names is not None else None,
        }

    def checksum(self) -> str:
        """SHA-256 over the header and every array's dtype, shape and bytes."""
        return _checksum(self.header(), {n: getattr(self, n) for n in _ARRAY_FIELDS})

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the forest to `path` (.npz of plain arrays + a JSON header with a checksum)."""
        header = self.header()
        header["checksum"] = self.checksum()
        arrays = {n: getattr(self, n) for n in _ARRAY_FIELDS}
        arrays["header"] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Forest:
        """Read a forest written by `save`, verifying format, version and checksum."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                data = {name: npz[name] for name in npz.files}
        except (OSError, ValueError, EOFError) as exc:
            raise ForestFormatError(f"{path}: not a readable forest file ({exc})") from exc
        try:
            header = json.loads(bytes(data.pop("header")).decode())
        except (KeyError, ValueError) as exc:
            raise ForestFormatError(f"{path}: missing or corrupt forest header") from exc
        if header.get("format") != FORMAT_NAME:
            raise ForestFormatError(f"{path}: not a {FORMAT_NAME} file")
        if header.get("version") != FORMAT_VERSION:
            raise ForestFormatError(
                f"{path}: forest format version {header.get('version')} is not supported "
                f"(this code reads version {FORMAT_VERSION})"
            )
        missing = [n for n in _ARRAY_FIELDS if n not in data]
        if missing:
            raise ForestFormatError(f"{path}: forest file lacks arrays {missing}")
        expected = header.pop("checksum", None)
        actual = _checksum(header, {n: data[n] for n in _ARRAY_FIELDS})
        if expected != actual:
            raise ForestFormatError(
                f"{path}: checksum mismatch (file says {expected}, contents hash to {actual}); "
                "the file is corrupt or was modified"
            )
        names = header["feature_names"]
        forest = cls(
            n_features=header["n_features"],
            objective=header["objective"],
            base_score=header["base_score"],
            base_margin=np.uint32(header["base_margin_bits"]).view(np.float32),
            feature_names=tuple(names) if names is not None else None,
            **{n: data[n] for n in _ARRAY_FIELDS},
        )
        validate(forest)
        return forest


def _checksum(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in _ARRAY_FIELDS:
        arr = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        digest.update(arr.tobytes())
    return "sha256:" + digest.hexdigest()


_DTYPES = {
    "tree_offsets": np.int64,
    "tree_depths": np.int32,
    "feature": np.int32,
    "threshold": np.float32,
    "default_left": np.uint8,
    "left_child": np.int32,
    "leaf_value": np.float32,
}


def validate(forest: Forest) -> None:
    """Raise ForestFormatError unless the arrays form a well-formed forest."""
    for name, dtype in _DTYPES.items():
        arr = getattr(forest, name)
        if arr.dtype != dtype or arr.ndim != 1:
            raise ForestFormatError(f"forest array {name} must be 1-D {np.dtype(dtype)}")
    n = forest.n_nodes
    node_fields = ("feature", "threshold", "default_left", "left_child", "leaf_value")
    if any(getattr(forest, f).shape[0] != n for f in node_fields):
        raise ForestFormatError("forest node arrays differ in length")
    offs = forest.tree_offsets
    if offs.shape[0] != forest.n_trees + 1 or offs[0] != 0 or offs[-1] != n:
        raise ForestFormatError("forest tree_offsets do not cover the node arrays")
    sizes = np.diff(offs)
    if (sizes < 1).any():
        raise ForestFormatError("forest has an empty tree")
    if forest.objective not in OBJECTIVES:
        raise ForestFormatError(f"unsupported objective {forest.objective!r}")
    if (forest.feature >= forest.n_features).any() or (forest.feature < -1).any():
        raise ForestFormatError("forest split feature out of range")
    local = np.arange(n, dtype=np.int64) - np.repeat(offs[:-1], sizes)
    size_of = np.repeat(sizes, sizes)
    leaf = forest.feature < 0
    if (forest.left_child[leaf] != local[leaf]).any():
        raise ForestFormatError("forest leaf does not point to itself")
    left = forest.left_child[~leaf].astype(np.int64)
    if ((left <= local[~leaf]) | (left + 1 >= size_of[~leaf])).any():
        raise ForestFormatError("forest child index out of its tree")


# -- derived layouts -----------------------------------------------------------------------


@dataclass(frozen=True)
class BinnedLayout:
    """The CPU twin's integer layout (None when the model does not fit uint16 bins).

    used_features: int64 (n_used,) the input columns the model reads, in bin-matrix order
    cuts, cut_offsets: float32 sorted distinct thresholds of used feature u at
        cuts[cut_offsets[u]:cut_offsets[u + 1]]
    nodes: uint64 per node: bits 0-15 threshold bin j, 16-31 NaN marker (NAN_BIN when a missing
        value goes left, else NEVER_BIN), 32-47 used-feature index, 48-63 local left child
    """

    used_features: np.ndarray
    cuts: np.ndarray
    cut_offsets: np.ndarray
    nodes: np.ndarray


def binned_layout(forest: Forest) -> BinnedLayout | None:
    """The uint16-bin layout of `forest`, or None when a limit of that encoding is exceeded."""
    return forest.cached("binned", _build_binned)


def _build_binned(forest: Forest) -> BinnedLayout | None:
    split = forest.feature >= 0
    if np.diff(forest.tree_offsets).max(initial=0) > MAX_LOCAL_NODES:
        return None
    used = np.unique(forest.feature[split]).astype(np.int64)
    if used.shape[0] > 0xFFFF:
        return None
    remap = np.full(max(forest.n_features, 1), -1, np.int64)
    remap[used] = np.arange(used.shape[0])
    feat_u = remap[forest.feature[split]]
    thr = forest.threshold[split]
    # Distinct (feature, threshold) pairs, sorted by feature then threshold.
    keys = np.stack([feat_u.astype(np.float64), thr.astype(np.float64)])
    order = np.lexsort(keys[::-1])
    f_sorted, t_sorted = feat_u[order], thr[order]
    first = np.ones(order.shape[0], bool)
    first[1:] = (f_sorted[1:] != f_sorted[:-1]) | (t_sorted[1:] != t_sorted[:-1])
    cuts = t_sorted[first].astype(np.float32)
    cut_feat = f_sorted[first]
    counts = np.bincount(cut_feat, minlength=used.shape[0])
    if counts.max(initial=0) > MAX_CUTS_PER_FEATURE or np.isnan(cuts).any():
        return None
    cut_offsets = np.zeros(used.shape[0] + 1, np.int64)
    np.cumsum(counts, out=cut_offsets[1:])
    # Rank of each split's threshold within its feature's cuts.
    dedup_index = np.cumsum(first) - 1
    rank_sorted = dedup_index - cut_offsets[f_sorted]
    rank = np.empty_like(rank_sorted)
    rank[order] = rank_sorted

    n = forest.n_nodes
    j = np.full(n, 0xFFFF, np.uint64)
    marker = np.full(n, NEVER_BIN, np.uint64)
    feat = np.zeros(n, np.uint64)
    j[split] = rank.astype(np.uint64)
    marker[split & (forest.default_left != 0)] = NAN_BIN
    feat[split] = feat_u.astype(np.uint64)
    left = forest.left_child.astype(np.uint64)
    nodes = j | (marker << np.uint64(16)) | (feat << np.uint64(32)) | (left << np.uint64(48))
    return BinnedLayout(used, cuts, cut_offsets, nodes)


def lane_nodes(forest: Forest) -> np.ndarray:
    """Nodes packed as uint64 for the CPU twin's float walk: bits 0-31 feature, 32-62 local
    left child, 63 set when a missing value goes right (thresholds stay in `forest.threshold`)."""
    return forest.cached("lane_nodes", _build_lane_nodes)


def _build_lane_nodes(forest: Forest) -> np.ndarray:
    split = forest.feature >= 0
    default_right = (split & (forest.default_left == 0)).astype(np.uint64)
    feat = np.maximum(forest.feature, 0).astype(np.uint64)
    left = forest.left_child.astype(np.uint64)
    return feat | (left << np.uint64(32)) | (default_right << np.uint64(63))


def gpu_node_table(forest: Forest) -> np.ndarray:
    """Nodes packed as (n_nodes, 4) 32-bit words for the CUDA kernel.

    Words: threshold (float bits; NaN for a leaf so nothing goes right), feature | default-right
    flag in bit 31, local left child, leaf value (float bits).
    """
    return forest.cached("gpu_nodes", _build_gpu_nodes)


def _build_gpu_nodes(forest: Forest) -> np.ndarray:
    table = np.empty((forest.n_nodes, 4), np.uint32)
    table[:, 0] = forest.threshold.view(np.uint32)
    feat = np.maximum(forest.feature, 0).astype(np.uint32)
    default_right = (forest.feature >= 0) & (forest.default_left == 0)
    table[:, 1] = feat | (default_right.astype(np.uint32) << np.uint32(31))
    table[:, 2] = forest.left_child.astype(np.uint32)
    table[:, 3] = forest.leaf_value.view(np.uint32)
    return table


# Order-preserving uint32 keys of float32 values: x < y <=> key(x) < key(y) for non-NaN x, y
# (-0.0 and +0.0 share a key); every NaN gets NAN_KEY, above the key of +inf.
NAN_KEY = 0xFFFFFFFF


def float_keys(values: np.ndarray) -> np.ndarray:
    """`key(x)` of float32 `values` as uint32 (the mapping the key walk compares)."""
    x = np.asarray(values, np.float32) + np.float32(0.0)  # -0.0 -> +0.0
    b = x.view(np.uint32).astype(np.uint64)
    key = np.where(b >> np.uint64(31), ~b & np.uint64(0xFFFFFFFF), b | np.uint64(0x80000000))
    return np.where(np.isnan(x), np.uint64(NAN_KEY), key).astype(np.uint32)


@dataclass(frozen=True)
class KeyLayout:
    """The CPU twin's default layout: integer keys, one 16-byte record per node.

    used_features: int64 (n_used,) the input columns the model reads; a block of rows is copied
        as keys into a lane-interleaved buffer `keys[group][used feature][lane]` (8 lanes)
    nodes: uint64 (2 * n_nodes,), per node two words:
        word 0: bits 0-31 A = key(threshold), bits 32-63 B; a row goes right iff
            (key(x) - A) mod 2**64 < B, with B = NAN_KEY - A (missing goes left) or
            NAN_KEY - A + 1 (missing goes right); a leaf has B = 0 and A = its value's bits
        word 1: bits 0-31 used-feature index * 8, bits 32-63 local left child * 2 (so that
            `2 * tree_offset + child` indexes word 0 of the child)
    """

    used_features: np.ndarray
    nodes: np.ndarray


def key_layout(forest: Forest) -> KeyLayout:
    """The key layout of `forest` (built once per forest)."""
    return forest.cached("keys", _build_keys)


def _build_keys(forest: Forest) -> KeyLayout:
    split = forest.feature >= 0
    used = np.unique(forest.feature[split]).astype(np.int64)
    remap = np.zeros(max(forest.n_features, 1), np.int64)
    remap[used] = np.arange(used.shape[0])
    a = float_keys(np.where(split, forest.threshold, np.float32(0))).astype(np.uint64)
    span = np.uint64(NAN_KEY) - a + (forest.default_left == 0).astype(np.uint64)
    leaf_bits = forest.leaf_value.view(np.uint32).astype(np.uint64)
    word0 = np.where(split, a | (span << np.uint64(32)), leaf_bits)
    feat = np.where(split, remap[np.maximum(forest.feature, 0)] * 8, 0).astype(np.uint64)
    word1 = feat | ((2 * forest.left_child.astype(np.uint64)) << np.uint64(32))
    nodes = np.empty(2 * forest.n_nodes, np.uint64)
    nodes[0::2] = word0
    nodes[1::2] = word1
    return KeyLayout(used, nodes)
