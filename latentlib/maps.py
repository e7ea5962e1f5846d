"""2-D maps of samples (UMAP) and the way back from a map into the space the samples live in.

A map is for looking: clusters of seeds, prompts or images side by side. What makes it a tool is the
way back: pick a point and get the samples nearest to it (or the mean of its neighbours, a point of the
space), pick two groups of points and get the :class:`~latentlib.directions.Direction` from one to the
other, ready for ``model.generate(..., edits=[(direction, strength)])``.

    >>> m = UMAPMap(random_state=0).fit(samples.X, space="h")
    >>> m.embedding_                      # (N, 2)
    >>> left = m.select(box=(-5, 0, -10, 10)); right = m.select(box=(0, 5, -10, 10))
    >>> d = m.direction_between(left, right, name="left -> right")

UMAP itself is umap-learn's. Samples of thousands of values are first reduced with PCA (``pca=50``
components, scikit-learn), as umap-learn's documentation advises for high-dimensional data. Up to
``exact_neighbors`` samples (20,000), the neighbour graph is exact (scikit-learn's ``NearestNeighbors``)
and handed to umap-learn, which then skips its approximate search (pynndescent): on 10,000 points that
is faster, and it saves most of the half minute numba otherwise spends compiling on the first map of a
session. Above that, umap-learn's own approximate search is used. With a ``random_state`` umap-learn runs
on one thread and gives the same map every time; ``random_state=None`` lets it use every core and the map
changes from run to run.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import torch

from .directions import Direction, _flat

__all__ = ["PCAMap", "SampleMap", "UMAPMap"]


def _count(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")
    return int(value)


class SampleMap:
    """What every 2-D map of samples shares: ``embedding_`` (N, 2) of the fitted ``samples_``, and the way
    back into their space (nearest samples, selections, the mean of a selection, the direction between
    two selections). :class:`UMAPMap` and :class:`PCAMap` make the map; a subclass sets ``fit``,
    ``transform``, ``_kind`` and ``_settings``."""

    _kind = "map"

    def fit(self, X, y=None, *, space: str | None = None) -> SampleMap:
        raise NotImplementedError

    def transform(self, X) -> np.ndarray:
        raise NotImplementedError

    def _settings(self) -> dict:
        raise NotImplementedError

    def fit_transform(self, X, y=None, *, space: str | None = None) -> np.ndarray:
        return self.fit(X, space=space).embedding_

    def _check(self):
        if not hasattr(self, "embedding_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit(X) first.")

    def nearest(self, point, k: int = 1) -> np.ndarray:
        """Indices of the ``k`` samples whose map positions are nearest to ``point`` (x, y), nearest first."""
        self._check()
        k = _count("k", k, 1)
        p = np.asarray(point, dtype=np.float64)
        if p.shape != (2,) or not np.isfinite(p).all():
            raise ValueError(f"`point` must be a finite (x, y) pair on the map, got {point!r}.")
        dist = np.linalg.norm(self.embedding_ - p, axis=1)
        return np.argsort(dist, kind="stable")[: min(k, len(dist))]

    def point_to_space(self, point, k: int = 8) -> torch.Tensor:
        """A point of the samples' space for a point of the map: the mean of its ``k`` nearest samples,
        shaped like one sample (k=1: the nearest sample itself)."""
        idx = self.nearest(point, k)
        return torch.from_numpy(self.samples_[idx].mean(0).reshape(self.sample_shape_))

    def select(self, *, box=None, polygon=None, indices=None) -> np.ndarray:
        """Indices of the samples in a selection of the map: a ``box`` (x0, x1, y0, y1), a ``polygon`` of
        (x, y) vertices (as a lasso on a plot gives), or ``indices`` / a boolean mask as they are."""
        self._check()
        given = [a is not None for a in (box, polygon, indices)]
        if sum(given) != 1:
            raise ValueError("give exactly one of `box`, `polygon` or `indices`.")
        e = self.embedding_
        if box is not None:
            b = np.asarray(box, dtype=np.float64)
            if b.shape != (4,) or b[0] > b[1] or b[2] > b[3]:
                raise ValueError(f"`box` must be (x0, x1, y0, y1) with x0 <= x1 and y0 <= y1, got {box!r}.")
            inside = (e[:, 0] >= b[0]) & (e[:, 0] <= b[1]) & (e[:, 1] >= b[2]) & (e[:, 1] <= b[3])
            return np.flatnonzero(inside)
        if polygon is not None:
            from matplotlib.path import Path as PolyPath

            vertices = np.asarray(polygon, dtype=np.float64)
            if vertices.ndim != 2 or vertices.shape[1] != 2 or len(vertices) < 3:
                raise ValueError(f"`polygon` must be at least 3 (x, y) vertices, got shape {vertices.shape}.")
            return np.flatnonzero(PolyPath(vertices).contains_points(e))
        idx = np.asarray(indices)
        if idx.size == 0:
            return np.zeros(0, dtype=np.int64)
        if idx.dtype == bool:
            if idx.shape != (len(e),):
                raise ValueError(f"a boolean `indices` mask needs one entry per sample ({len(e)}), got {idx.shape}.")
            return np.flatnonzero(idx)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= len(e):
            raise ValueError(f"`indices` must be sample indices in [0, {len(e) - 1}] or a boolean mask.")
        return idx

    def mean(self, indices) -> torch.Tensor:
        """The mean of the selected samples in their own space, shaped like one sample."""
        idx = self.select(indices=indices)
        if idx.size == 0:
            raise ValueError("the selection is empty; select at least one sample.")
        return torch.from_numpy(self.samples_[idx].mean(0).reshape(self.sample_shape_))

    def direction_between(self, a, b, *, name: str = "", space: str | None = None, provenance=None) -> Direction:
        """The direction from selection ``a``'s mean to selection ``b``'s (indices or masks), with the
        scale of all the map's samples along it (so strength 1 is one standard deviation)."""
        self._check()
        space = space or self.space_
        if space is None:
            raise ValueError("say which `space` these samples came from (fit(..., space=) or direction_between(space=)).")
        ia, ib = self.select(indices=a), self.select(indices=b)
        for label, idx in (("a", ia), ("b", ib)):
            if idx.size == 0:
                raise ValueError(f"selection `{label}` is empty; select at least one sample.")
        delta = self.samples_[ib].mean(0) - self.samples_[ia].mean(0)
        if float(np.linalg.norm(delta)) < 1e-12:
            raise ValueError("the two selections have the same mean; there is no direction between them.")
        d = Direction.from_vector(torch.from_numpy(delta.reshape(self.sample_shape_)), space, name=name or "map selection",
                                  provenance={"method": f"{self._kind} selection (mean difference)",
                                              "n_a": int(ia.size), "n_b": int(ib.size), "samples": self.n_samples_,
                                              self._kind: self._settings(), **(provenance or {})})
        return d.with_scale_from(self.samples_.reshape(-1, *self.sample_shape_))


class UMAPMap(SampleMap):
    """A 2-D UMAP map of samples, scikit-learn style, with nearest samples, selections and directions.

    Args:
        n_neighbors, min_dist, metric: umap-learn's (local vs global structure, how tightly points pack,
            the distance).
        n_epochs: optimisation epochs. umap-learn's own default is 500 up to 10,000 samples and 200 above;
            the default here is 200 for every size (the layout of 10,000 points settles well before 200, and
            500 costs 2.5 times as long).
        init: "pca" (default; fast and deterministic) or "spectral" (umap-learn's default, slower on
            thousands of points) or "random".
        pca: reduce samples with more values than this to this many principal components before UMAP
            (None: never).
        random_state: seeds PCA and UMAP; an int gives a reproducible, single-threaded map.
        exact_neighbors: up to this many samples the neighbour graph is exact (see the module docstring),
            and :meth:`transform` places new samples at the distance-weighted mean of their nearest
            samples' map positions.
    """

    def __init__(self, n_neighbors: int = 15, min_dist: float = 0.1, *, metric: str = "euclidean",
                 n_epochs: int = 200, init: str = "pca", pca: int | None = 50, random_state: int | None = 0,
                 exact_neighbors: int = 20_000):
        _count("n_neighbors", n_neighbors, 2)
        _count("n_epochs", n_epochs, 1)
        if pca is not None:
            _count("pca", pca, 2)
        if isinstance(min_dist, bool) or not isinstance(min_dist, numbers.Real) or not 0 <= min_dist <= 1:
            raise ValueError(f"`min_dist` must be a number in [0, 1], got {min_dist!r}.")
        if init not in ("pca", "spectral", "random"):
            raise ValueError(f"`init` must be 'pca', 'spectral' or 'random', got {init!r}.")
        self.n_neighbors, self.min_dist, self.metric, self.n_epochs = n_neighbors, min_dist, metric, n_epochs
        self.init, self.pca, self.random_state = init, pca, random_state
        self.exact_neighbors = _count("exact_neighbors", exact_neighbors, 0)

    def fit(self, X, y=None, *, space: str | None = None) -> UMAPMap:
        """Map ``X`` (N, ...) to ``embedding_`` (N, 2); ``space`` is recorded for directions."""
        try:
            import umap
        except ImportError as err:  # a dependency of latentlib; only a broken install lacks it
            raise ImportError("UMAPMap needs umap-learn: pip install 'umap-learn>=0.5.12'.") from err
        flat = _flat(X)
        if flat.shape[0] <= self.n_neighbors:
            raise ValueError(f"a UMAP map with n_neighbors={self.n_neighbors} needs more than {self.n_neighbors} "
                             f"samples; X has {flat.shape[0]}.")
        self.samples_ = flat
        self.sample_shape_ = tuple(X.shape[1:])
        self.space_ = space
        self.n_samples_ = flat.shape[0]
        self.reducer_ = None
        features = flat
        if self.pca is not None and flat.shape[1] > self.pca:
            from sklearn.decomposition import PCA

            n = min(self.pca, flat.shape[0] - 1)
            self.reducer_ = PCA(n_components=n, svd_solver="randomized" if n < min(flat.shape) // 2 else "full",
                                random_state=self.random_state).fit(flat)
            features = self.reducer_.transform(flat)
        options = {}
        self.neighbors_ = None
        if flat.shape[0] <= self.exact_neighbors:
            from sklearn.neighbors import NearestNeighbors

            try:
                self.neighbors_ = NearestNeighbors(n_neighbors=self.n_neighbors, metric=self.metric).fit(features)
            except ValueError:  # a metric scikit-learn does not know: umap-learn's own search handles it
                self.neighbors_ = None
            if self.neighbors_ is not None:
                dist, idx = self.neighbors_.kneighbors(features)
                options["precomputed_knn"] = (idx, dist, None)
        self.umap_ = umap.UMAP(n_neighbors=self.n_neighbors, min_dist=self.min_dist, metric=self.metric,
                               n_epochs=self.n_epochs, init=self.init, random_state=self.random_state,
                               n_jobs=1 if self.random_state is not None else -1, **options)
        with warnings.catch_warnings():  # "transform will be unavailable": ours does not use umap-learn's
            warnings.filterwarnings("ignore", message=".*knn_search_index.*", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*", category=UserWarning)
            self.embedding_ = np.asarray(self.umap_.fit_transform(features), dtype=np.float32)
        self.features_ = features
        return self

    def transform(self, X) -> np.ndarray:
        """Place new samples on the fitted map, ``(N, 2)``: the distance-weighted mean of their nearest
        samples' positions (exact-neighbour maps), or umap-learn's out-of-sample transform."""
        self._check()
        flat = _flat(X)
        if flat.shape[1] != self.samples_.shape[1]:
            raise ValueError(f"X has samples of {flat.shape[1]} values; this map was fitted on {self.samples_.shape[1]}.")
        features = self.reducer_.transform(flat) if self.reducer_ is not None else flat
        if self.neighbors_ is None:
            return np.asarray(self.umap_.transform(features), dtype=np.float32)
        dist, idx = self.neighbors_.kneighbors(features)
        weights = 1.0 / np.maximum(dist, 1e-8)
        weights /= weights.sum(1, keepdims=True)
        return (weights[:, :, None] * self.embedding_[idx]).sum(1).astype(np.float32)

    _kind = "umap"

    def _settings(self) -> dict:
        return {"n_neighbors": self.n_neighbors, "min_dist": self.min_dist, "metric": self.metric,
                "n_epochs": self.n_epochs, "init": self.init, "pca": self.pca, "random_state": self.random_state}


class PCAMap(SampleMap):
    """A 2-D map of samples by their first two principal components (scikit-learn PCA), with the same
    way back as :class:`UMAPMap`: nearest samples, selections, the mean of a selection, and the
    direction between two selections. Linear, so distances along the map mean the same everywhere;
    UMAP shows clusters better.

        >>> m = PCAMap().fit(samples.X, space="xT")
        >>> d = m.direction_between(m.select(box=(-9, 0, -9, 9)), m.select(box=(0, 9, -9, 9)))
    """

    _kind = "pca"

    def __init__(self, *, random_state: int | None = 0):
        self.random_state = random_state

    def fit(self, X, y=None, *, space: str | None = None) -> PCAMap:
        """Map ``X`` (N, ...) to ``embedding_`` (N, 2); ``space`` is recorded for directions."""
        from sklearn.decomposition import PCA

        flat = _flat(X)
        if flat.shape[0] < 3:
            raise ValueError(f"a PCA map needs at least 3 samples; X has {flat.shape[0]}.")
        self.samples_, self.sample_shape_, self.space_ = flat, tuple(X.shape[1:]), space
        self.n_samples_ = flat.shape[0]
        self.pca_ = PCA(n_components=2, random_state=self.random_state).fit(flat)
        self.embedding_ = np.asarray(self.pca_.transform(flat), dtype=np.float32)
        return self

    def transform(self, X) -> np.ndarray:
        """Place new samples on the map: their first two principal-component scores, ``(N, 2)``."""
        self._check()
        flat = _flat(X)
        if flat.shape[1] != self.samples_.shape[1]:
            raise ValueError(f"X has samples of {flat.shape[1]} values; this map was fitted on {self.samples_.shape[1]}.")
        return np.asarray(self.pca_.transform(flat), dtype=np.float32)

    def _settings(self) -> dict:
        return {"n_components": 2, "random_state": self.random_state}
