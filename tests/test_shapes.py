"""The shapes world: deterministic scenes, right labels (checked on pixels), captions, splits."""

import math

import numpy as np
import pytest

from latentlib import shapes


def test_scenes_are_deterministic_and_splits_independent():
    assert shapes.sample_scene(7) == shapes.sample_scene(7)
    assert shapes.sample_scene(7, "train") != shapes.sample_scene(7, "test")
    a = np.asarray(shapes.render(shapes.sample_scene(3)))
    b = np.asarray(shapes.render(shapes.sample_scene(3)))
    assert np.array_equal(a, b)
    assert shapes.caption(shapes.sample_scene(3), 3) == shapes.caption(shapes.sample_scene(3), 3)


def test_render_a_known_scene_pixel_by_pixel():
    scene = shapes.Scene(shape="square", color="red", background="black", size=0.25, x=0.5, y=0.5, rotation=0.0)
    image = np.asarray(shapes.render(scene)).astype(int)
    # An axis-aligned square of circumradius 16 px: half side 16/sqrt(2) = 11.3 px around (32, 32).
    assert tuple(image[32, 32]) == shapes.COLORS["red"]
    assert tuple(image[32, 32 + 10]) == shapes.COLORS["red"]
    assert tuple(image[32, 32 + 13]) == shapes.BACKGROUNDS["black"]
    assert tuple(image[0, 0]) == shapes.BACKGROUNDS["black"]
    red = (np.abs(image - shapes.COLORS["red"]).sum(-1) < 30).sum()
    assert abs(red - (2 * 16 / math.sqrt(2)) ** 2) < 40  # area 512 px, give or take the anti-aliased edge
    rotated = shapes.Scene(**{**scene.to_dict(), "rotation": math.pi / 4})
    image = np.asarray(shapes.render(rotated)).astype(int)
    assert tuple(image[32, 32 + 14]) == shapes.COLORS["red"]  # a corner now points right


@pytest.mark.parametrize("shape, expected_fraction", [("circle", math.pi), ("triangle", 3 * math.sqrt(3) / 4)])
def test_area_follows_size(shape, expected_fraction):
    scene = shapes.Scene(shape=shape, color="blue", background="white", size=0.3, x=0.5, y=0.5, rotation=0.0)
    image = np.asarray(shapes.render(scene)).astype(float)
    white, blue = np.array(shapes.BACKGROUNDS["white"], float), np.array(shapes.COLORS["blue"], float)
    coverage = ((white - image) @ (white - blue)) / ((white - blue) @ (white - blue))  # per-pixel blue fraction
    expected = expected_fraction * (0.3 * 64) ** 2
    # PIL fills polygons up to half a supersampled pixel past the edge: about +2% for a triangle this size.
    assert abs(coverage.sum() - expected) / expected < 0.03


def test_position_is_the_centre_of_mass():
    for seed in range(20):
        scene = shapes.sample_scene(seed)
        if not scene.present or scene.shape in ("triangle", "star"):  # centroid = centre for symmetric shapes
            continue
        image = np.asarray(shapes.render(scene)).astype(int)
        mask = np.abs(image - shapes.COLORS[scene.color]).sum(-1) < 60
        ys, xs = np.nonzero(mask)
        assert abs((xs.mean() + 0.5) / 64 - scene.x) < 0.02 and abs((ys.mean() + 0.5) / 64 - scene.y) < 0.02


def test_empty_scenes_are_plain_backgrounds_and_about_five_percent():
    scenes = [shapes.sample_scene(s) for s in range(2000)]
    empty = [s for s in scenes if not s.present]
    assert 0.03 < len(empty) / len(scenes) < 0.07
    image = np.asarray(shapes.render(empty[0]))
    assert (image == shapes.BACKGROUNDS[empty[0].background]).all()


def test_factor_ranges_and_background_never_the_object_colour():
    for seed in range(500):
        s = shapes.sample_scene(seed)
        if not s.present:
            continue
        assert s.shape in shapes.SHAPES and s.color in shapes.COLORS and s.background in shapes.BACKGROUNDS
        assert shapes.COLORS[s.color] != shapes.BACKGROUNDS[s.background]
        assert shapes.SIZE_RANGE[0] <= s.size <= shapes.SIZE_RANGE[1]
        assert s.size <= s.x <= 1 - s.size and s.size <= s.y <= 1 - s.size
        order = shapes.SYMMETRY[s.shape]
        assert s.rotation == 0.0 if order == 0 else 0 <= s.rotation < 2 * math.pi / order


def test_heldout_pairs_never_in_train_and_only_in_heldout():
    train = {(s.shape, s.color) for s in map(shapes.sample_scene, range(3000)) if s.present}
    assert not train & set(shapes.HELDOUT_PAIRS)
    assert len(train) == len(shapes.SHAPES) * len(shapes.COLORS) - len(shapes.HELDOUT_PAIRS)
    heldout = {(s.shape, s.color) for s in (shapes.sample_scene(i, "heldout") for i in range(200))}
    assert heldout == set(shapes.HELDOUT_PAIRS)
    every = {(s.shape, s.color) for s in (shapes.sample_scene(i, "all") for i in range(3000)) if s.present}
    assert len(every) == len(shapes.SHAPES) * len(shapes.COLORS)


def test_captions_use_the_vocabulary_name_the_factors_and_never_rotation():
    vocab = set(shapes.vocabulary())
    scenes = [shapes.sample_scene(s) for s in range(2000)]
    texts = [shapes.caption(scene, s) for s, scene in enumerate(scenes)]
    assert 0.06 < sum(t == "" for t in texts) / len(texts) < 0.14  # empty captions, for guidance
    empty = [text for scene, text in zip(scenes, texts, strict=True) if not scene.present]
    assert len(empty) > 50 and all(text for text in empty)  # an empty scene never takes the empty caption
    assert len(set(texts)) > 300  # varied templates and word order
    for seed, text in enumerate(texts):
        words = text.replace(",", " ").split()
        assert set(words) <= vocab, text
        assert "rotat" not in text and "degree" not in text
        scene = scenes[seed]
        if not (scene.present and text):
            continue
        # Attributes may be left out, but what is named is right.
        assert any(w in text for w in shapes._SYNONYMS[scene.shape]), (scene, text)  # the shape is always there
        assert {w for w in words if w in shapes.COLORS} <= {scene.color}, (scene, text)
        assert {w for w in words if w in shapes.BACKGROUNDS} <= {scene.background}, (scene, text)
        sizes = {w for w in words if w in ("small", "tiny", "medium", "large", "big")}
        assert sizes <= set(" ".join(shapes._SYNONYMS[shapes.size_word(scene.size)]).split()), (scene, text)
        places = {w for w in words if w in ("top", "bottom", "left", "right", "center")}
        assert places <= set(shapes.position_words(scene.x, scene.y).split()), (scene, text)


def test_coarse_words():
    assert shapes.size_word(0.13) == "small" and shapes.size_word(0.21) == "medium" and shapes.size_word(0.29) == "large"
    assert shapes.position_words(0.1, 0.1) == "top left" and shapes.position_words(0.5, 0.5) == "center"
    assert shapes.position_words(0.9, 0.5) == "right" and shapes.position_words(0.5, 0.9) == "bottom"


def test_make_dataset_and_bad_input():
    images, labels, captions = shapes.make_dataset(5, "test", start=10)
    assert images.shape == (5, 64, 64, 3) and images.dtype == np.uint8
    assert [label["seed"] for label in labels] == list(range(10, 15)) and len(captions) == 5
    with pytest.raises(ValueError, match=r"`split` must be one of train, val, test, heldout, all; got 'dev'"):
        shapes.sample_scene(0, "dev")
    with pytest.raises(ValueError, match=r"`seed` must be an integer >= 0, got -1"):
        shapes.sample_scene(-1)
    with pytest.raises(ValueError, match=r"`n` must be an integer >= 1, got 0"):
        shapes.make_dataset(0)


def test_committed_sample_is_what_the_generator_makes():
    import json
    from pathlib import Path

    import PIL.Image

    root = Path(__file__).resolve().parents[1] / "datasets" / "shapes" / "sample"
    for split in ("train", "heldout"):
        rows = [json.loads(line) for line in (root / split / "labels.jsonl").read_text().splitlines()]
        assert len(rows) == 24
        images, labels, captions = shapes.make_dataset(24, split, start=0)
        for row, image, label, text in zip(rows, images, labels, captions, strict=True):
            assert np.array_equal(np.asarray(PIL.Image.open(root / split / row["file"]).convert("RGB")), image)
            assert {k: row[k] for k in label} == label and row["caption"] == text


def test_object_mask_covers_the_disk_and_its_rim_and_nothing_else():
    import dataclasses

    scene = dataclasses.replace(shapes.sample_scene(3), shape="circle", color="red", size=0.3, x=0.5, y=0.5,
                                rotation=0.0, present=True)
    mask = shapes.object_mask(scene)
    r = 0.3 * 64  # the circle's radius in pixels (its area is pi (size * 64)^2, see test_area_follows_size)
    yy, xx = np.mgrid[:64, :64]
    distance = np.hypot(xx + 0.5 - 32, yy + 0.5 - 32)  # from each pixel's centre to the circle's
    assert mask.dtype == bool
    assert mask[distance < r - 1].all()  # the whole disk
    assert not mask[distance > r + 1.5].any()  # nothing past the anti-aliased rim
    assert not shapes.object_mask(dataclasses.replace(scene, present=False, shape=None, color=None)).any()


def test_hue_spread_draws_a_continuous_hue_within_the_names_share_and_keeps_every_other_factor():
    import colorsys
    import dataclasses

    assert shapes.sample_scene(7, hue_spread=0.0) == shapes.sample_scene(7)  # the discrete world, unchanged
    assert "hue" not in shapes.sample_scene(7).to_dict()
    hues = {}
    for seed in range(400):
        plain, spread = shapes.sample_scene(seed, "test"), shapes.sample_scene(seed, "test", hue_spread=0.5)
        assert dataclasses.replace(spread, hue=None) == plain  # own random stream: the rest is the same scene
        assert spread == shapes.sample_scene(seed, "test", hue_spread=0.5)  # deterministic
        if not plain.present:
            assert spread.hue is None
            continue
        lo, hi = shapes.hue_range(plain.color, 0.5)
        offset = (spread.hue - shapes.HUES[plain.color] + 180) % 360 - 180
        assert lo - shapes.HUES[plain.color] <= offset <= hi - shapes.HUES[plain.color]
        # the name is still the nearest named hue, and the pixels carry the hue
        nearest = min(shapes.HUES, key=lambda c: abs((spread.hue - shapes.HUES[c] + 180) % 360 - 180))
        assert nearest == plain.color
        rgb = np.asarray(shapes.render(dataclasses.replace(spread, size=0.3, x=0.5, y=0.5)))[32, 32] / 255
        assert abs((360 * colorsys.rgb_to_hsv(*rgb)[0] - spread.hue + 180) % 360 - 180) < 1.5
        hues.setdefault(plain.color, []).append(offset)
    # spread over the share, not a few values
    assert all(len(set(np.round(v, 3))) == len(v) and np.ptp(v) > 0.5 * (np.subtract(*shapes.hue_range(c, 0.5)[::-1]))
               for c, v in hues.items() if len(v) > 10)
    # at its name's own hue a scene renders the name's exact RGB, for every name
    for name in shapes.COLORS:
        scene = dataclasses.replace(shapes.sample_scene(0), color=name)
        assert np.array_equal(np.asarray(shapes.render(dataclasses.replace(scene, hue=shapes.HUES[name]))),
                              np.asarray(shapes.render(scene)))
    # going round the circle, each share ends where the next begins at spread 1, and before it below 1
    ordered = sorted(shapes.COLORS, key=shapes.HUES.get)
    for spread in (0.5, 1.0):
        for name, following in zip(ordered, ordered[1:] + ordered[:1]):
            gap = (shapes.hue_range(following, spread)[0] - shapes.hue_range(name, spread)[1] + 180) % 360 - 180
            assert gap == pytest.approx(0, abs=1e-9) if spread == 1.0 else gap > 5


def test_hue_spread_and_hue_are_checked():
    import dataclasses

    for bad in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match=r"`hue_spread` must be a number in \[0, 1\]"):
            shapes.sample_scene(0, hue_spread=bad)
    with pytest.raises(ValueError, match=r"`color` must be one of"):
        shapes.hue_range("teal", 0.5)
    with pytest.raises(ValueError, match=r"`scene.hue` must be None or a finite number"):
        shapes.render(dataclasses.replace(shapes.sample_scene(0), hue=float("nan")))
    _, labels, _ = shapes.make_dataset(4, "test", hue_spread=0.5)
    assert all(("hue" in lab) == lab["present"] for lab in labels)
