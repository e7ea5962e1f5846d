"""The shapes probe: output decoding, the shipped weights' accuracy, and bad input."""

import math

import numpy as np
import pytest
import torch

from latentlib import probes, shapes


def test_decoding_inverts_the_targets():
    """Raw outputs built from the targets decode back to the labels (rotation modulo symmetry included)."""
    _, labels, _ = shapes.make_dataset(200, "test")
    target = probes.probe_targets(labels)
    raw = {
        "present": (target["present"].float() * 20 - 10)[:, None],
        "shape": torch.nn.functional.one_hot(target["shape"], 5).float() * 20,
        "color": torch.nn.functional.one_hot(target["color"], 8).float() * 20,
        "background": torch.nn.functional.one_hot(target["background"], 4).float() * 20,
        **{k: ((target[k] - c) / sc)[:, None] for k, (c, sc) in probes._REGRESSION.items()},
        "rotation": target["rotation"],
    }
    est = probes.decode_outputs(raw)
    for i, label in enumerate(labels):
        assert est["present"][i] == label["present"] and est["background"][i] == label["background"]
        assert est["shape"][i] == label["shape"] and est["color"][i] == label["color"]
        if label["present"]:
            assert math.isclose(est["x"][i], label["x"], rel_tol=1e-6)
            assert abs(est["rotation"][i] - label["rotation"]) < 1e-4 or label["shape"] == "circle"


@pytest.fixture(scope="module")
def probe():
    return probes.load_probe()


def test_shipped_probe_meets_its_accuracy_on_fresh_scenes(probe):
    # A fixed sample (seeds 50000.. of the test split, never trained on); the full 2,000-scene evaluation
    # is in latentlib/weights/shapes-probe/metrics.json.
    m = probes.evaluate_probe(probe, n=400, split="test", start=50_000)
    assert m["shape_accuracy"] >= 0.99 and m["color_accuracy"] >= 0.99 and m["background_accuracy"] >= 0.99
    assert m["present_accuracy"] >= 0.99
    assert m["size_r2"] >= 0.98 and m["x_r2"] >= 0.98 and m["y_r2"] >= 0.98
    h = probes.evaluate_probe(probe, n=100, split="heldout", start=50_000)
    assert h["shape_accuracy"] >= 0.99 and h["color_accuracy"] >= 0.99


def test_probe_reads_the_committed_sample(probe):
    import json
    from pathlib import Path

    import PIL.Image

    root = Path(__file__).resolve().parents[1] / "datasets" / "shapes" / "sample" / "train"
    rows = [json.loads(line) for line in (root / "labels.jsonl").read_text().splitlines()]
    est = probe([PIL.Image.open(root / r["file"]).convert("RGB") for r in rows])
    assert list(est["background"]) == [r["background"] for r in rows]
    assert list(est["color"]) == [r["color"] for r in rows]
    assert list(est["shape"]) == [r["shape"] for r in rows]


def test_probe_bad_input(probe, tmp_path):
    with pytest.raises(ValueError, match=r"`images` are 32x32; this probe reads 64x64"):
        probe(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"has no probe .*python -m latentlib.train_shapes probe"):
        probes.load_probe(tmp_path)
