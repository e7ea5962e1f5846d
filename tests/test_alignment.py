"""The alignment table of components with known factors, rotation as a circular-linear correlation."""

import numpy as np
import pytest

from latentlib.discover import alignment, circular_correlation, rotation_angle


def test_circular_correlation_is_the_multiple_correlation_on_cos_and_sin():
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 500)
    x = np.cos(angle - 1.2) + 0.5 * rng.normal(size=500)
    r, phase = circular_correlation(x, angle)
    design = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    reference = np.sqrt(LinearRegression().fit(design, x).score(design, x))
    assert r == pytest.approx(reference, rel=1e-9)
    assert phase == pytest.approx(1.2, abs=0.1)
    # the best phase gives the largest plain Pearson r over a grid of phases
    grid = np.linspace(-np.pi, np.pi, 721)
    pearson = [np.corrcoef(x, np.cos(angle - p))[0, 1] for p in grid]
    assert max(pearson) == pytest.approx(r, abs=1e-4)
    assert grid[int(np.argmax(pearson))] == pytest.approx(phase, abs=0.01)


def test_circular_correlation_of_noise_is_small_and_bad_input_is_refused():
    rng = np.random.default_rng(1)
    r, _ = circular_correlation(rng.normal(size=2000), rng.uniform(0, 2 * np.pi, 2000))
    assert r < 0.08  # R^2 ~ 2 / n
    with pytest.raises(ValueError, match="same length"):
        circular_correlation(np.zeros(5), np.zeros(6))
    assert circular_correlation(np.ones(10), np.arange(10.0)) == (0.0, 0.0)


def test_alignment_reads_rotation_at_any_phase_and_skips_circles():
    rng = np.random.default_rng(2)
    n = 800
    shape = np.array(["square", "circle", "triangle", "star"] * (n // 4), dtype=object)
    order = np.array([{"square": 4, "circle": 0, "triangle": 3, "star": 5}[s] for s in shape], dtype=np.float64)
    rotation = np.where(order > 0, rng.uniform(0, 2 * np.pi, n) / np.maximum(order, 1), 0.0)
    size, x, y = rng.uniform(0.1, 0.4, n), rng.uniform(0.2, 0.8, n), rng.uniform(0.2, 0.8, n)
    present = np.ones(n, bool)
    present[:8] = False
    # component 0 follows rotation at a phase halfway between cos and sin; component 1 follows size;
    # circles get values that would spoil the rotation column if they were counted
    c0 = np.cos(order * rotation - np.pi / 4) + 0.1 * rng.normal(size=n)
    c0[shape == "circle"] = rng.normal(scale=5.0, size=(shape == "circle").sum())
    scores = np.stack([c0, size + 0.01 * rng.normal(size=n), rng.normal(size=n)], axis=1)
    readings = {"present": present, "shape": shape, "size": size, "x": x, "y": y, "rotation": rotation}
    table = alignment(scores, readings)
    keep, angle = rotation_angle(readings)
    assert keep.sum() == (present & (shape != "circle")).sum()
    assert table["rotation"][0] > 0.97
    best_of_cos_sin = max(abs(np.corrcoef(c0[keep], f(angle[keep]))[0, 1]) for f in (np.cos, np.sin))
    assert best_of_cos_sin < 0.75  # what the old best-of-cos-and-sin reading saw for the same component
    assert table["size"][1] == pytest.approx(abs(np.corrcoef(scores[present, 1], size[present])[0, 1]))
    assert max(table["x"] + table["y"]) < 0.15 and table["rotation"][2] < 0.15
