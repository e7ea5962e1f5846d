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


def _scenes(shape: str, n: int, seed: int = 0):
    """``n`` rendered scenes of ``shape`` over every colour and background, at random sizes, places and
    rotations; returns pixels (n, 3, 64, 64) in [0, 1] and the generator's symmetry order x rotation."""
    rng = np.random.default_rng(seed)
    pics, truth = [], []
    for i in range(n):
        scene = shapes.Scene(shape, list(shapes.COLORS)[i % 8], list(shapes.BACKGROUNDS)[(i // 8) % 4],
                             rng.uniform(*shapes.SIZE_RANGE), rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7),
                             rng.uniform(0, 2 * np.pi))
        pics.append(np.asarray(shapes.render(scene), dtype=np.float32) / 255)
        truth.append(shapes.SYMMETRY[shape] * scene.rotation)
    return torch.from_numpy(np.stack(pics)).permute(0, 3, 1, 2), np.array(truth)


def _circular_error_deg(a, b):
    return np.degrees(np.angle(np.exp(1j * (np.asarray(a) - np.asarray(b)))))


@pytest.mark.parametrize("shape", ["square", "triangle", "star", "cross"])
def test_rotation_meter_reads_the_generators_rotation_better_than_the_probe(shape, probe):
    pixels, truth = _scenes(shape, 120, seed=shapes.SHAPES.index(shape))
    meter = _circular_error_deg(probes.rotation_meter(pixels, shape), truth)
    assert abs(meter.mean()) < 0.5 and meter.std() < 1.5 and np.abs(meter).max() < 6  # degrees of order x angle
    head = _circular_error_deg(shapes.SYMMETRY[shape] * probe(pixels)["rotation"], truth)
    assert head.std() > 2.5 * meter.std()  # the probe's rotation head, on the same scenes (measured: ~5x)
    # faint background texture below the threshold (a generated image's) changes nothing, although the moment
    # weighs far pixels by r^order
    noisy = pixels.clone()
    noisy[:, :, :6, :] = (noisy[:, :, :6, :] + 0.12 * torch.rand(noisy[:, :, :6, :].shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    textured = _circular_error_deg(probes.rotation_meter(noisy, shape), truth)
    assert textured.std() < 1.5 and np.abs(textured).max() < 6
    # per-image names (a probe's reading) give the same as one name for all
    assert np.allclose(probes.rotation_meter(pixels[:4], [shape] * 4), probes.rotation_meter(pixels[:4], shape))


def test_rotation_meter_has_no_angle_for_circles_and_empty_scenes(probe):
    circle = shapes.render(shapes.Scene("circle", "red", "black", 0.2, 0.5, 0.5, 0.3))
    empty = shapes.render(shapes.Scene(None, None, "gray", 0.0, 0.5, 0.5, 0.0, present=False))
    square = shapes.render(shapes.Scene("square", "red", "black", 0.2, 0.5, 0.5, 0.3))
    out = probes.rotation_meter([np.asarray(circle), np.asarray(empty), np.asarray(square)], ["circle", "square", None])
    assert np.isnan(out).all()
    metered = probes.RotationMeter(probe, "square")([np.asarray(square), np.asarray(empty)])
    assert metered["rotation_angle"][0] == pytest.approx(_wrap(4 * 0.3), abs=0.05) and np.isnan(metered["rotation_angle"][1])
    assert "rotation" in metered and metered["shape"][0] == "square"  # the probe's readings pass through
    assert probes.RotationMeter(probe).classes == probe.classes
    # the collect cache tells meters for different shapes, thresholds and probes apart
    other = probes.Probe(probes.ShapesProbe())  # untrained weights
    names = {m.name for m in (probes.RotationMeter(probe), probes.RotationMeter(probe, "square"),
                              probes.RotationMeter(probe, "square", threshold=0.2), probes.RotationMeter(other))}
    assert len(names) == 4
    from latentlib.collect import _probe_id

    meter = probes.RotationMeter(probe, "square")  # the cache key is that name, the same for the same meter
    assert _probe_id(meter) == meter.name == probes.RotationMeter(probe, "square").name


def _wrap(a):
    return float(np.angle(np.exp(1j * a)))


def test_rotation_meter_bad_input(probe):
    pic = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match=r"`shape` must be one of circle, square, .* or None; got 'hexagon'"):
        probes.rotation_meter(pic, "hexagon")
    with pytest.raises(ValueError, match=r"`shape` has 2 names for 1 images"):
        probes.rotation_meter(pic, ["square", "star"])
    with pytest.raises(TypeError, match=r"`shape` must be a shape name \(circle, square, .*\), None, or one of these "
                                        r"per image; got int"):
        probes.rotation_meter(pic, 4)
    with pytest.raises(ValueError, match=r"`threshold` must be in \(0, 1\).*got 1.5"):
        probes.rotation_meter(pic, "square", threshold=1.5)
    with pytest.raises(ValueError, match=r"`shape` must be one of .* or None; got 'oval'"):
        probes.RotationMeter(probe, "oval")
    with pytest.raises(TypeError, match=r"`probe` must be callable"):
        probes.RotationMeter("probe")
    with pytest.raises(TypeError, match=r"`shape` must be a shape name \(circle, .*\) or None; got int"):
        probes.RotationMeter(probe, 4)
    with pytest.raises(ValueError, match=r"this probe gives no 'shape' reading \(it gives size\); pass `shape=`"):
        probes.RotationMeter(lambda images: {"size": np.zeros(len(images))})([pic])


def test_colour_meter_reads_the_objects_colour_toward_a_name(probe):
    import dataclasses

    base = shapes.Scene("square", "red", "black", 0.28, 0.5, 0.5, 0.0)
    meter = probes.ColourMeter(probe, "cyan")
    pics = [np.asarray(shapes.render(dataclasses.replace(base, color=c))) for c in shapes.COLORS]
    pics.append(np.asarray(shapes.render(shapes.Scene(None, None, "gray", 0.0, 0.5, 0.5, 0.0, present=False))))
    out = meter(pics)
    axis = probes.colour_axis("cyan")
    assert np.allclose(axis @ axis, 1) and np.isnan(out["toward_cyan"][-1])  # no object, no reading
    for reading, name in zip(out["toward_cyan"], shapes.COLORS):  # the fill's projection (the rim blends a little)
        assert reading == pytest.approx(np.asarray(shapes.COLORS[name]) / 255 @ axis, abs=0.03)
    assert max(shapes.COLORS, key=lambda c: out["toward_cyan"][list(shapes.COLORS).index(c)]) == "cyan"
    # a fill moved step by step from red to cyan reads higher at every step; the probe's readings pass through
    red, cyan = np.asarray(shapes.COLORS["red"], float), np.asarray(shapes.COLORS["cyan"], float)
    steps = []
    for t in np.linspace(0, 1, 6):
        pic = np.asarray(shapes.render(base)).copy()
        inside = (pic == shapes.COLORS["red"]).all(-1)
        pic[inside] = np.rint((1 - t) * red + t * cyan).astype(np.uint8)
        steps.append(pic)
    moved = meter(steps)
    assert np.all(np.diff(moved["toward_cyan"]) > 0.05) and moved["shape"][0] == "square"
    assert meter.classes == probe.classes and meter.key == "toward_cyan"
    # the collect cache tells meters for different names, thresholds and probes apart
    other = probes.Probe(probes.ShapesProbe())  # untrained weights
    names = {m.name for m in (meter, probes.ColourMeter(probe, "blue"), probes.ColourMeter(probe, "cyan", threshold=0.2),
                              probes.ColourMeter(other, "cyan"))}
    assert len(names) == 4


def test_colour_meter_bad_input(probe):
    with pytest.raises(ValueError, match=r"`colour` must be one of red, orange, .*; got 'teal'"):
        probes.ColourMeter(probe, "teal")
    with pytest.raises(TypeError, match=r"`probe` must be callable"):
        probes.ColourMeter("probe", "red")
    with pytest.raises(ValueError, match=r"`threshold` must be in \(0, 1\)"):
        probes.ColourMeter(probe, "red", threshold=0)
