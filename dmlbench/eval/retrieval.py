"""Retrieval metrics on unit embeddings: Recall@K, MAP@R, R-precision, MAP@K.

Written by hand on top of faiss rather than calling PML's AccuracyCalculator:
PML holds the full N × k neighbour matrix and several float64 copies of it
(7 GB on SOP), while here each chunk of queries is searched, scored and
dropped, so memory is bounded by the chunk size. The definitions follow
metrics.md and agree with PML to 1e-6 (tested).

Query set: a query whose label has no other reference can match nothing; it
is left out of every metric (as in PML) and counted in ``lone_queries``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

DEFAULT_CHUNK = 4096


def _as_float32(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def _as_labels(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _search_sets(query, query_labels, reference, reference_labels) -> tuple:
    """Arrays as faiss wants them, whether the queries search among themselves, and R
    per query: the references of its label, itself excluded."""
    query, query_labels = _as_float32(query), _as_labels(query_labels)
    same_set = reference is None
    if same_set:
        reference, reference_labels = query, query_labels
    else:
        reference, reference_labels = _as_float32(reference), _as_labels(reference_labels)
    if len(query) != len(query_labels) or len(reference) != len(reference_labels):
        raise ValueError("embeddings and labels must have the same length")
    ref_classes, ref_counts = np.unique(reference_labels, return_counts=True)
    pos = np.clip(np.searchsorted(ref_classes, query_labels), 0, len(ref_classes) - 1)
    r_per_query = np.where(ref_classes[pos] == query_labels, ref_counts[pos], 0) - same_set
    return query, query_labels, reference, reference_labels, same_set, r_per_query


def retrieval_metrics(
    query: np.ndarray,
    query_labels: np.ndarray,
    reference: np.ndarray | None = None,
    reference_labels: np.ndarray | None = None,
    ks: Sequence[int] = (1, 2, 4, 8),
    chunk_size: int = DEFAULT_CHUNK,
    map_at: Sequence[int] = (),
) -> dict[str, float]:
    """Metrics of ``query`` searched in ``reference`` by inner product.

    Without a reference the queries are searched among themselves and each
    query is removed from its own neighbour list by index (so an exact
    duplicate of it still counts as a neighbour).

    ``map_at`` (e.g. 1000 on SOP): MAP@K = (1/min(R, K)) Σ_{i ≤ K} P(i)·rel(i), the
    average precision over the first K neighbours, R the query's other references.
    """
    query, query_labels, reference, reference_labels, same_set, r_per_query = _search_sets(
        query, query_labels, reference, reference_labels
    )
    n_available = len(reference) - (1 if same_set else 0)
    k = min(max(int(r_per_query.max(initial=0)), max(ks), *map_at), n_available)
    search_k = k + 1 if same_set else k

    index = faiss.IndexFlatIP(reference.shape[1])
    index.add(reference)

    recall_hits = {K: 0 for K in ks}
    map_at_sums = {K: 0.0 for K in map_at}
    map_sum = map_paper_sum = rprec_sum = 0.0
    valid = 0
    columns = np.arange(1, k + 1)
    for start in range(0, len(query), chunk_size):
        stop = min(start + chunk_size, len(query))
        _, neighbours = index.search(query[start:stop], search_k)
        if same_set:
            neighbours = _drop_self(neighbours, np.arange(start, stop))
        r = r_per_query[start:stop]
        keep = r > 0
        if not keep.any():
            continue
        hits = reference_labels[neighbours[keep]] == query_labels[start:stop][keep, None]
        r = r[keep]
        valid += len(r)
        for K in ks:
            recall_hits[K] += int(hits[:, :K].any(axis=1).sum())
        within_r = columns[None, :] <= r[:, None]
        relevant = hits & within_r
        precision_at_i = np.cumsum(relevant, axis=1) / columns[None, :]
        ap_sum = (precision_at_i * relevant).sum(axis=1)
        map_sum += float((ap_sum / r).sum())
        map_paper_sum += float((ap_sum / (r + 1)).sum())
        rprec_sum += float((relevant.sum(axis=1) / r).sum())
        if map_at:
            precision_all = np.cumsum(hits, axis=1) / columns[None, :]
            for K in map_at:
                ap_k = (precision_all[:, :K] * hits[:, :K]).sum(axis=1)
                map_at_sums[K] += float((ap_k / np.minimum(r, K)).sum())

    out = {f"recall@{K}": recall_hits[K] / valid if valid else float("nan") for K in ks}
    out["map@r"] = map_sum / valid if valid else float("nan")
    out["r_precision"] = rprec_sum / valid if valid else float("nan")
    # The paper's reference code divides by the class count including the
    # query, so a perfect embedding scores (n-1)/n: shown beside, never instead.
    out["map@r_paper"] = map_paper_sum / valid if valid else float("nan")
    for K in map_at:
        out[f"map@{K}"] = map_at_sums[K] / valid if valid else float("nan")
    out["queries"] = valid
    out["lone_queries"] = int(len(query) - np.count_nonzero(r_per_query > 0))
    return out


def _self_mask(neighbours: np.ndarray, query_index: np.ndarray) -> np.ndarray:
    """True at each query's own index in its row (the last column if absent)."""
    is_self = neighbours == query_index[:, None]
    missing = ~is_self.any(axis=1)
    is_self[missing, -1] = True
    return is_self


def _drop_self(neighbours: np.ndarray, query_index: np.ndarray) -> np.ndarray:
    """Remove each query's own index from its row (the last column if absent)."""
    keep = ~_self_mask(neighbours, query_index)
    return neighbours[keep].reshape(len(neighbours), -1)


@dataclass
class QueryRanking:
    """Each query's first k neighbours and its own score: what a picture of a
    retrieval result needs (the metrics above only keep the sums)."""

    neighbours: np.ndarray  # queries × k, indices into the reference set
    similarities: np.ndarray  # queries × k, inner products
    correct: np.ndarray  # queries × k, same label as the query
    average_precision: np.ndarray  # per query, AP@R as in MAP@R; NaN for a lone query


def rank_queries(
    query: np.ndarray,
    query_labels: np.ndarray,
    reference: np.ndarray | None = None,
    reference_labels: np.ndarray | None = None,
    k: int = 5,
    chunk_size: int = DEFAULT_CHUNK,
) -> QueryRanking:
    """The per-query view of :func:`retrieval_metrics` (same neighbours, same AP@R:
    the mean of ``average_precision`` over non-lone queries is MAP@R)."""
    query, query_labels, reference, reference_labels, same_set, r_per_query = _search_sets(
        query, query_labels, reference, reference_labels
    )
    n_available = len(reference) - int(same_set)
    depth = min(max(int(r_per_query.max(initial=0)), k), n_available)
    index = faiss.IndexFlatIP(reference.shape[1])
    index.add(reference)
    columns = np.arange(1, depth + 1)
    parts: list[tuple[np.ndarray, ...]] = []
    for start in range(0, len(query), chunk_size):
        stop = min(start + chunk_size, len(query))
        sims, neighbours = index.search(query[start:stop], depth + int(same_set))
        if same_set:
            keep = ~_self_mask(neighbours, np.arange(start, stop))
            sims = sims[keep].reshape(len(sims), -1)
            neighbours = neighbours[keep].reshape(len(neighbours), -1)
        hits = reference_labels[neighbours] == query_labels[start:stop, None]
        r = r_per_query[start:stop]
        relevant = hits & (columns[None, :] <= r[:, None])
        precision = np.cumsum(relevant, axis=1) / columns[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = np.where(r > 0, (precision * relevant).sum(axis=1) / r, np.nan)
        parts.append((neighbours[:, :k], sims[:, :k], hits[:, :k], ap))
    neighbours, sims, hits, ap = (np.concatenate(column) for column in zip(*parts, strict=True))
    return QueryRanking(neighbours, sims, hits, ap)
