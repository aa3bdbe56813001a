"""The tree-ensemble model the ai.onnx.ml tree lowerings (``ml_trees``) emit: the attributes
of TreeEnsembleClassifier / TreeEnsembleRegressor (``parse_legacy``) and TreeEnsemble v5
(``parse_v5``) read into one :class:`Forest` (splits and leaves in one numbering, roots in tree
order), and the float32 thresholds that keep float64 splits exact (``threshold32``).

Why a module of its own: this is plain numpy over the node attributes, no TFLite; the emission
strategies in ``ml_trees`` only read the Forest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .ml_common import as_text

MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ")
V5_MODES = MODES + ("BRANCH_MEMBER",)
# onnxruntime (1.32) reads TreeEnsemble's post_transform with its legacy enum order (1 =
# LOGISTIC, 2 = SOFTMAX); the ONNX spec and reference say 1 = SOFTMAX, 2 = LOGISTIC. We follow
# onnxruntime, the runtime the result is checked against, and say so on the node's report row.
V5_TRANSFORMS = ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT")
V5_AGGREGATES = ("AVERAGE", "SUM", "MIN", "MAX")


class TreeError(ValueError):
    """The attributes do not describe a valid ensemble (reason: unsupported_attribute_value)."""


def _f32_down(t: float) -> np.float32:
    f = np.float32(t)
    if np.isfinite(t) and float(f) > t:
        f = np.nextafter(f, np.float32(-np.inf))
    return np.float32(f)


def _f32_up(t: float) -> np.float32:
    f = np.float32(t)
    if np.isfinite(t) and float(f) < t:
        f = np.nextafter(f, np.float32(np.inf))
    return np.float32(f)


def _f32_exact(t: float) -> np.float32:
    f = np.float32(t)
    return f if (np.isnan(t) or float(f) == t) else np.float32(np.nan)


def threshold32(mode: str, t: float) -> np.float32:
    """The float32 threshold that gives a float32 input the same branch as float64 ``t``."""
    if mode in ("BRANCH_LEQ", "BRANCH_GT"):
        return _f32_down(t)
    if mode in ("BRANCH_LT", "BRANCH_GTE"):
        return _f32_up(t)
    return _f32_exact(t)  # EQ/NEQ/MEMBER: an unrepresentable value never equals a float32


@dataclass
class Split:
    feature: int
    threshold: float
    mode: str
    true: int
    false: int
    track_true: bool
    members: tuple[float, ...] = ()


@dataclass
class Leaf:
    weights: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Forest:
    """Trees in one numbering: ``nodes[i]`` is a Split or a Leaf; ``roots`` in tree order."""

    nodes: list
    roots: list[int]
    n_targets: int
    aggregate: str = "SUM"
    transform: str = "NONE"
    base_values: tuple[float, ...] = ()
    class_ids: frozenset = frozenset()

    def depth(self) -> int:
        """Splits on the longest root-to-leaf path (iterative: trees can be deep)."""
        return max(self.tree_depths())

    def tree_depths(self) -> list[int]:
        """Per tree (``roots`` order): splits on its longest root-to-leaf path."""
        depths = []
        memo: dict[int, int] = {}
        for root in self.roots:
            stack = [(root, False)]
            while stack:
                i, done = stack.pop()
                n = self.nodes[i]
                if isinstance(n, Leaf):
                    memo[i] = 0
                    continue
                if done:
                    memo[i] = 1 + max(memo[n.true], memo[n.false])
                    continue
                if i in memo:
                    continue
                stack.append((i, True))
                for c in (n.true, n.false):
                    if c not in memo:
                        stack.append((c, False))
                if len(stack) > 10 * len(self.nodes) + 10:
                    raise TreeError("the tree structure has a cycle")
            depths.append(memo[root])
        return depths

    def reachable_leaves(self, root: int) -> list[int]:
        out, stack, seen = [], [root], set()
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            n = self.nodes[i]
            if isinstance(n, Leaf):
                out.append(i)
            else:
                stack += [n.true, n.false]
        return out

    def score_presence(self, k: int, first_only: bool = False) -> str:
        """'always' if every sample gets a weight for target ``k`` from some tree, 'never' if
        no leaf carries one, else 'dynamic'."""
        has = [self._has(i, k, first_only) for i in range(len(self.nodes))]
        if not any(has):
            return "never"
        for r in self.roots:
            if all(has[leaf] for leaf in self.reachable_leaves(r)):
                return "always"
        return "dynamic"

    def _has(self, i: int, k: int, first_only: bool) -> bool:
        n = self.nodes[i]
        if not isinstance(n, Leaf) or not n.weights:
            return False
        if first_only:
            return n.weights[0][0] == k
        return any(t == k for t, _ in n.weights)


def _floats(attrs, name):
    if attrs.get(name) is not None:
        return [float(v) for v in attrs[name]]
    t = attrs.get(name + "_as_tensor")
    return [float(v) for v in np.asarray(t).ravel()] if t is not None else None


def parse_legacy(attrs: dict, prefix: str, n_targets: int, aggregate: str) -> Forest:
    """TreeEnsembleClassifier (``prefix='class'``) / TreeEnsembleRegressor (``'target'``)."""
    tree_ids = list(attrs.get("nodes_treeids", []))
    node_ids = list(attrs.get("nodes_nodeids", []))
    n = len(tree_ids)
    feats = list(attrs.get("nodes_featureids", []))
    modes = list(attrs.get("nodes_modes", []))
    values = _floats(attrs, "nodes_values") or [0.0] * n
    trues = list(attrs.get("nodes_truenodeids", []))
    falses = list(attrs.get("nodes_falsenodeids", []))
    tracks = list(attrs.get("nodes_missing_value_tracks_true", []) or [])
    if not (len(node_ids) == len(feats) == len(modes) == len(trues) == len(falses) == n) or (
        len(values) != n
    ):
        raise TreeError("nodes_* attributes have different lengths")
    if n == 0:
        raise TreeError("the ensemble has no nodes")
    index: dict[tuple[int, int], int] = {}
    for i, key in enumerate(zip(tree_ids, node_ids, strict=True)):
        if key in index:
            raise TreeError(f"node {key[1]} of tree {key[0]} is defined twice")
        index[key] = i
    nodes: list = []
    for i in range(n):
        mode = as_text(modes[i], "LEAF")
        if mode == "LEAF":
            nodes.append(Leaf())
            continue
        if mode not in MODES:
            raise TreeError(f"node mode {mode!r}")
        try:
            t = index[(tree_ids[i], trues[i])]
            f = index[(tree_ids[i], falses[i])]
        except KeyError as err:
            raise TreeError(
                f"a child of node {node_ids[i]} in tree {tree_ids[i]} is missing"
            ) from err
        track = bool(tracks[i]) if i < len(tracks) else False
        nodes.append(Split(int(feats[i]), values[i], mode, t, f, track))
    ids = list(attrs.get(f"{prefix}_ids", []))
    w_nodes = list(attrs.get(f"{prefix}_nodeids", []))
    w_trees = list(attrs.get(f"{prefix}_treeids", []))
    weights = _floats(attrs, f"{prefix}_weights") or []
    if not (len(ids) == len(w_nodes) == len(w_trees) == len(weights)):
        raise TreeError(f"{prefix}_* attributes have different lengths")
    for k, nid, tid, w in zip(ids, w_nodes, w_trees, weights, strict=True):
        i = index.get((tid, nid))
        if i is None or not isinstance(nodes[i], Leaf):
            raise TreeError(f"weight for node {nid} of tree {tid}, which is not a leaf")
        if not 0 <= int(k) < n_targets:
            raise TreeError(f"{prefix}_ids value {k} outside [0, {n_targets})")
        nodes[i].weights.append((int(k), w))
    roots, prev = [], None
    for i, tid in enumerate(tree_ids):
        if prev is None or tid != prev:
            roots.append(i)
        prev = tid
    return Forest(
        nodes,
        roots,
        n_targets,
        aggregate=aggregate,
        transform=as_text(attrs.get("post_transform"), "NONE"),
        base_values=tuple(_floats(attrs, "base_values") or ()),
        class_ids=frozenset(int(k) for k in ids),
    )


def parse_v5(attrs: dict) -> Forest:
    """TreeEnsemble (ai.onnx.ml opset 5): interior nodes then leaves, one numbering."""
    feats = list(attrs.get("nodes_featureids", []))
    m = len(feats)
    splits = np.asarray(attrs.get("nodes_splits", np.zeros(0)), np.float64).ravel()
    modes = np.asarray(attrs.get("nodes_modes", np.zeros(0)), np.int64).ravel()
    trues = list(attrs.get("nodes_truenodeids", []))
    falses = list(attrs.get("nodes_falsenodeids", []))
    true_leaf = list(attrs.get("nodes_trueleafs", []))
    false_leaf = list(attrs.get("nodes_falseleafs", []))
    tracks = list(attrs.get("nodes_missing_value_tracks_true", []) or [])
    targets = list(attrs.get("leaf_targetids", []))
    lw = np.asarray(attrs.get("leaf_weights", np.zeros(0)), np.float64).ravel()
    if not (
        len(splits)
        == len(modes)
        == len(trues)
        == len(falses)
        == len(true_leaf)
        == len(false_leaf)
        == m
    ) or len(targets) != len(lw):
        raise TreeError("nodes_*/leaf_* attributes have different lengths")
    n_targets = int(attrs.get("n_targets", 0) or 0)
    members_flat = np.asarray(attrs.get("membership_values", np.zeros(0)), np.float64).ravel()
    sets, cur = [], []
    for v in members_flat:
        if np.isnan(v):
            sets.append(tuple(cur))
            cur = []
        else:
            cur.append(float(v))
    if cur:
        sets.append(tuple(cur))
    nodes: list = []
    member_i = 0
    nl = len(targets)
    for i in range(m):
        code = int(modes[i])
        if not 0 <= code < len(V5_MODES):
            raise TreeError(f"nodes_modes value {code}")
        mode = V5_MODES[code]
        members: tuple[float, ...] = ()
        if mode == "BRANCH_MEMBER":
            if member_i >= len(sets):
                raise TreeError("membership_values has fewer sets than BRANCH_MEMBER nodes")
            members = sets[member_i]
            member_i += 1

        def ref(j, leaf):
            if leaf:
                if not 0 <= j < nl:
                    raise TreeError(f"leaf index {j} out of range")
                return m + int(j)
            if not 0 <= j < m:
                raise TreeError(f"node index {j} out of range")
            return int(j)

        nodes.append(
            Split(
                int(feats[i]),
                float(splits[i]),
                mode,
                ref(trues[i], true_leaf[i]),
                ref(falses[i], false_leaf[i]),
                bool(tracks[i]) if i < len(tracks) else False,
                members,
            )
        )
    for t, w in zip(targets, lw, strict=True):
        if not 0 <= int(t) < n_targets:
            raise TreeError(f"leaf_targetids value {t} outside [0, {n_targets})")
        nodes.append(Leaf([(int(t), float(w))]))
    roots = [int(r) for r in attrs.get("tree_roots", [])]
    if not roots or any(not 0 <= r < m for r in roots):
        raise TreeError("tree_roots is empty or out of range")
    agg = int(attrs.get("aggregate_function", 1))
    tr = int(attrs.get("post_transform", 0))
    if not (0 <= agg < 4 and 0 <= tr < 5):
        raise TreeError(f"aggregate_function={agg} / post_transform={tr}")
    return Forest(nodes, roots, n_targets, V5_AGGREGATES[agg], V5_TRANSFORMS[tr])
