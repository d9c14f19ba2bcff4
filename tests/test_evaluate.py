import numpy as np
import pytest
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from dmlbench.eval.retrieval import retrieval_metrics


def unit(rows):
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_hand_computed_case():
    # 1-D angles on the circle make the neighbour order obvious.
    angles = np.array([0.0, 0.1, 0.25, 1.0, 1.1, 3.0])
    emb = unit(np.stack([np.cos(angles), np.sin(angles)], 1))
    labels = np.array([0, 0, 1, 1, 0, 1])
    m = retrieval_metrics(emb, labels, ks=(1, 2))
    # Neighbours (self removed), nearest first, label in brackets; R = 2 for all:
    # q0: 1(0) 2(1) 3(1) 4(0) 5(1)   ranks 1..R: hit at 1        -> (1/1)/2 = 0.5
    # q1: 0(0) 2(1) 3(1) 4(0) 5(1)   hit at 1                    -> 0.5
    # q2: 1(0) 0(0) 3(1) 4(0) 5(1)   no hit in ranks 1..2        -> 0
    # q3: 4(0) 2(1) 1(0) 0(0) 5(1)   hit at 2: P(2) = 1/2        -> 0.25
    # q4: 3(1) 2(1) 1(0) 0(0) 5(1)   no hit in ranks 1..2        -> 0
    # q5: 4(0) 3(1) 2(1) 1(0) 0(0)   hit at 2: P(2) = 1/2        -> 0.25
    ap = [0.5, 0.5, 0.0, 0.25, 0.0, 0.25]
    assert m["map@r"] == pytest.approx(0.25)
    assert m["map@r"] == pytest.approx(np.mean(ap))
    # R@1: q0 1, q1 1, q2 0, q3 0, q4 0, q5 0
    assert m["recall@1"] == pytest.approx(2 / 6)
    # R@2: q0 1, q1 1, q2 0, q3 1, q4 0, q5 1
    assert m["recall@2"] == pytest.approx(4 / 6)
    # R-precision with R=2: q0 .5, q1 .5, q2 0, q3 .5, q4 0, q5 .5
    assert m["r_precision"] == pytest.approx(2 / 6)
    assert m["map@r_paper"] == pytest.approx(np.mean(ap) * 2 / 3)
    assert m["queries"] == 6 and m["lone_queries"] == 0


def test_exact_duplicates_are_kept_as_neighbours():
    # Two identical images of class 0: each must retrieve the other even though
    # faiss may rank the twin before the query itself.
    emb = unit([[1, 0], [1, 0], [0, 1], [0, 1], [0.6, 0.8]])
    labels = np.array([0, 0, 1, 1, 2])
    m = retrieval_metrics(emb, labels, ks=(1,))
    assert m["recall@1"] == 1.0
    assert m["map@r"] == 1.0


def test_lone_queries_are_left_out():
    emb = unit([[1, 0], [0.9, 0.1], [0, 1]])
    labels = np.array([0, 0, 7])
    m = retrieval_metrics(emb, labels, ks=(1,))
    assert m["lone_queries"] == 1
    assert m["queries"] == 2
    assert m["recall@1"] == 1.0 and m["map@r"] == 1.0


def test_separate_query_and_gallery_never_search_the_query_set():
    query = unit([[1, 0], [0, 1]])
    gallery = unit([[0.9, 0.1], [0.1, 0.9], [0.95, 0.05]])
    m = retrieval_metrics(query, np.array([0, 1]), gallery, np.array([1, 1, 0]), ks=(1, 2))
    # q0 (class 0): nearest g2 (0) -> hit; R=1, AP = 1
    # q1 (class 1): nearest g1 (1), then g0 (1): R=2, AP = 1
    assert m["recall@1"] == 1.0
    assert m["map@r"] == 1.0


@pytest.mark.parametrize("chunk", [7, 64, 10_000])
def test_equals_pml_accuracy_calculator(chunk):
    rng = np.random.default_rng(0)
    emb = unit(rng.normal(size=(1500, 24)))
    labels = rng.integers(0, 200, 1500)
    ours = retrieval_metrics(emb, labels, ks=(1,), chunk_size=chunk)
    pml = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "r_precision"),
        k="max_bin_count",
    ).get_accuracy(emb, labels)
    assert ours["recall@1"] == pytest.approx(pml["precision_at_1"], abs=1e-6)
    assert ours["map@r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(pml["r_precision"], abs=1e-6)


def test_perfect_embedding_scores_one_and_paper_variant_scores_n_minus_1_over_n():
    labels = np.repeat(np.arange(5), 4)
    emb = unit(np.eye(5)[labels] + 1e-3 * np.random.default_rng(0).normal(size=(20, 5)))
    m = retrieval_metrics(emb, labels, ks=(1, 2, 4, 8))
    assert m["map@r"] == pytest.approx(1.0)
    assert m["map@r_paper"] == pytest.approx(3 / 4)


def test_map_at_k_by_hand():
    """A query of class a among references b, b, b, a, a (in order of similarity): R = 2,
    MAP@5 = (1/2)(1/4 + 2/5); MAP@2 = 0 (no hit among the first two)."""
    from dmlbench.eval.retrieval import retrieval_metrics

    x = np.array([[1.0, 0.0], [0.99, 0.1], [0.6, 0.8], [0.95, 0.3], [0.7, 0.7], [0.0, 1.0]])
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.array([0, 1, 0, 1, 1, 0])  # query 0's neighbours: 1, 3, 4 (b), then 2, 5 (a)
    m = retrieval_metrics(x[:1], labels[:1], x[1:], labels[1:], ks=(1,), map_at=(2, 5))
    assert m["map@5"] == pytest.approx((1 / 4 + 2 / 5) / 2)
    assert m["map@2"] == pytest.approx(0.0)


def test_nmi_and_f1_by_hand_and_against_scikit_learn():
    from sklearn.metrics import normalized_mutual_info_score

    from dmlbench.eval.clustering import clustering_metrics, nmi, pairwise_f1

    labels = np.array([0, 0, 0, 1, 1, 1])
    assert nmi(labels, np.array([5, 5, 5, 7, 7, 7])) == pytest.approx(1.0)
    assert nmi(labels, np.array([0, 1, 0, 1, 0, 1])) == pytest.approx(
        normalized_mutual_info_score(labels, [0, 1, 0, 1, 0, 1]), abs=1e-12
    )
    # clusters {0,1,3} {2,4,5}: same-cluster pairs 6, same-class pairs 6, both: 2
    clusters = np.array([0, 0, 1, 0, 1, 1])
    assert pairwise_f1(labels, clusters) == pytest.approx(2 / 6)
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 7, 200), rng.integers(0, 9, 200)
        assert nmi(a, b) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-9)
    centres = np.eye(4) * 10
    points = np.repeat(centres, 5, axis=0) + rng.normal(0, 0.1, (20, 4))
    m = clustering_metrics(points.astype(np.float32), np.repeat(np.arange(4), 5))
    assert m == {"nmi": pytest.approx(1.0), "f1": pytest.approx(1.0)}
