"""UMAPMap: a planted two-cluster set is split on the map, and the way back recovers the planted direction."""

import numpy as np
import pytest
import torch

from latentlib.directions import Direction
from latentlib.maps import UMAPMap


def _clusters(n=160, d=300, gap=15.0, seed=0):
    rng = np.random.default_rng(seed)
    planted = rng.normal(size=d)
    planted /= np.linalg.norm(planted)
    labels = np.arange(n) % 2
    X = rng.normal(size=(n, d)) + gap * labels[:, None] * planted
    return X.astype(np.float32).reshape(n, 3, 10, 10), labels, planted


@pytest.fixture(scope="module")
def fitted():
    X, labels, planted = _clusters()
    return UMAPMap(n_neighbors=10, random_state=0).fit(X, space="h"), X, labels, planted


def test_the_map_separates_the_clusters_and_is_reproducible(fitted):
    m, X, labels, _ = fitted
    assert m.embedding_.shape == (len(X), 2)
    # every point's 5 nearest map neighbours come from its own cluster
    for i in range(0, len(X), 7):
        near = m.nearest(m.embedding_[i], k=6)[1:]
        assert (labels[near] == labels[i]).all()
    again = UMAPMap(n_neighbors=10, random_state=0).fit(X, space="h")
    np.testing.assert_array_equal(again.embedding_, m.embedding_)
    assert m.reducer_ is not None and m.reducer_.n_components_ == 50  # 300 values > pca=50


def test_selections_on_the_map_give_the_planted_direction(fitted):
    m, X, labels, planted = fitted
    # split the map where the clusters are: along the line between their centres
    c0, c1 = m.embedding_[labels == 0].mean(0), m.embedding_[labels == 1].mean(0)
    side = (m.embedding_ - (c0 + c1) / 2) @ (c1 - c0) > 0
    d = m.direction_between(~side, side, name="planted")
    assert isinstance(d, Direction) and d.space == "h" and d.shape == (3, 10, 10)
    assert float(d.vector.flatten().double() @ torch.from_numpy(planted)) > 0.9
    assert d.scale == pytest.approx(np.std(X.reshape(len(X), -1) @ d.vector.flatten().numpy()), rel=1e-4)
    assert d.provenance["n_a"] + d.provenance["n_b"] == len(X)
    # a box around one cluster's map region selects that cluster only
    e = m.embedding_[labels == 1]
    box = (e[:, 0].min(), e[:, 0].max(), e[:, 1].min(), e[:, 1].max())
    assert set(labels[m.select(box=box)]) == {1}
    square = [(box[0], box[2]), (box[1], box[2]), (box[1], box[3]), (box[0], box[3])]
    inside = m.select(polygon=square)
    assert set(labels[inside]) == {1} and len(inside) >= 0.8 * (labels == 1).sum()


def test_the_way_back_from_a_point(fitted):
    m, X, labels, planted = fitted
    i = 3
    assert m.nearest(m.embedding_[i], k=1)[0] == i
    torch.testing.assert_close(m.point_to_space(m.embedding_[i], k=1), torch.from_numpy(X[i]))
    mean = m.point_to_space(m.embedding_[i], k=8)
    near = m.nearest(m.embedding_[i], k=8)
    torch.testing.assert_close(mean, torch.from_numpy(X[near].mean(0)))
    torch.testing.assert_close(m.mean(near), mean)
    # a new sample of cluster 1 lands among cluster 1 on the map
    new = np.random.default_rng(5).normal(size=(1, 300)) + 15.0 * planted
    placed = m.transform(new.astype(np.float32))
    assert labels[m.nearest(placed[0], k=5)].mean() >= 0.8


def test_bad_input_is_named(fitted):
    m, X, _, _ = fitted
    with pytest.raises(ValueError, match="n_neighbors"):
        UMAPMap(n_neighbors=1)
    with pytest.raises(ValueError, match="min_dist"):
        UMAPMap(min_dist=2.0)
    with pytest.raises(ValueError, match="init"):
        UMAPMap(init="tsne")
    with pytest.raises(ValueError, match="more than 15"):
        UMAPMap().fit(X[:10])
    with pytest.raises(RuntimeError, match="not fitted"):
        UMAPMap().nearest((0, 0))
    with pytest.raises(ValueError, match="point"):
        m.nearest((0, 0, 0))
    with pytest.raises(ValueError, match="exactly one"):
        m.select(box=(0, 1, 0, 1), indices=[0])
    with pytest.raises(ValueError, match="box"):
        m.select(box=(1, 0, 0, 1))
    with pytest.raises(ValueError, match="empty"):
        m.direction_between([], [0, 1])
    with pytest.raises(ValueError, match="indices"):
        m.select(indices=[len(X)])
    with pytest.raises(ValueError, match="fitted on 300"):
        m.transform(np.zeros((2, 7), np.float32))


def test_umap_learns_own_neighbour_search_gives_the_same_clusters():
    """exact_neighbors=0: umap-learn finds the neighbours and places new samples itself."""
    X, labels, planted = _clusters()
    m = UMAPMap(n_neighbors=10, random_state=0, exact_neighbors=0).fit(X, space="h")
    assert m.neighbors_ is None
    for i in range(0, len(X), 11):
        assert (labels[m.nearest(m.embedding_[i], k=6)[1:]] == labels[i]).all()
    new = np.random.default_rng(5).normal(size=(1, 300)) + 15.0 * planted
    assert labels[m.nearest(m.transform(new.astype(np.float32))[0], k=5)].mean() >= 0.8


def test_pca_map_matches_scikit_learn_and_finds_the_planted_direction():
    from sklearn.decomposition import PCA

    from latentlib.maps import PCAMap, SampleMap, UMAPMap

    X, labels, planted = _clusters()
    m = PCAMap().fit(X, space="xT")
    assert isinstance(m, SampleMap) and not isinstance(m, UMAPMap)  # siblings: a PCA map is no UMAP map
    flat = X.reshape(len(X), -1)
    ref = PCA(n_components=2, random_state=0).fit(flat)
    np.testing.assert_allclose(np.abs(m.embedding_), np.abs(ref.transform(flat)), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(m.transform(X[:5]), m.embedding_[:5], atol=1e-4)
    d = m.direction_between(np.flatnonzero(labels == 0), np.flatnonzero(labels == 1), name="planted")
    assert abs(float(d.vector.flatten() @ torch.from_numpy(planted).float())) > 0.95
    assert d.provenance["method"] == "pca selection (mean difference)" and d.provenance["pca"]["n_components"] == 2
    with pytest.raises(RuntimeError, match="this PCAMap is not fitted yet"):
        PCAMap().nearest((0, 0))
    with pytest.raises(ValueError, match="a PCA map needs at least 3 samples; X has 2"):
        PCAMap().fit(X[:2])
