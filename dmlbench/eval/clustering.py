"""Clustering metrics of embeddings: NMI and F1 of a k-means clustering.

The VPTSP reference code (and most DML papers before MAP@R) reports them:
k-means with k = the number of classes, then how well the clusters match the
classes. k-means runs in faiss (exact, seeded); NMI and the pairwise F1 are a
few lines of counting on the contingency table, written here so they need no
second scikit-learn dependency of the runs (NMI agrees with scikit-learn's
``normalized_mutual_info_score`` to 1e-9: tested).
"""

from __future__ import annotations

import faiss
import numpy as np

KMEANS_ITERATIONS = 20
KMEANS_RESTARTS = 3  # faiss keeps the best of 3 seeded starts (one can stall in a poor optimum)


def kmeans_labels(embeddings: np.ndarray, clusters: int, seed: int = 0) -> np.ndarray:
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    kmeans = faiss.Kmeans(x.shape[1], clusters, niter=KMEANS_ITERATIONS, seed=seed,
                          nredo=KMEANS_RESTARTS, max_points_per_centroid=100_000)  # fmt: skip
    kmeans.train(x)
    _, assignment = kmeans.index.search(x, 1)
    return assignment[:, 0]


def _contingency(labels: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    _, label_ids = np.unique(labels, return_inverse=True)
    _, cluster_ids = np.unique(clusters, return_inverse=True)
    table = np.zeros((label_ids.max() + 1, cluster_ids.max() + 1), dtype=np.int64)
    np.add.at(table, (label_ids, cluster_ids), 1)
    return table


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Mutual information over the arithmetic mean of the two entropies."""
    table = _contingency(labels, clusters)
    n = table.sum()
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    nz = table > 0
    joint = table[nz] / n
    mutual = float((joint * np.log(joint * n * n / np.outer(rows, cols)[nz])).sum())
    h = (_entropy(rows) + _entropy(cols)) / 2
    return mutual / h if h > 0 else 1.0


def pairwise_f1(labels: np.ndarray, clusters: np.ndarray) -> float:
    """F1 over pairs of images: same class and same cluster is a true positive."""
    table = _contingency(labels, clusters)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    tp, same_cluster, same_class = pairs(table), pairs(table.sum(axis=0)), pairs(table.sum(axis=1))
    precision = tp / same_cluster if same_cluster else 0.0
    recall = tp / same_class if same_class else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def clustering_metrics(embeddings: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    clusters = kmeans_labels(embeddings, len(np.unique(labels)), seed)
    return {"nmi": nmi(labels, clusters), "f1": pairwise_f1(labels, clusters)}
