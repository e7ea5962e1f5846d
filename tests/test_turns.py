"""Turns (the edit for a circular factor): planted rings recovered by PCA and turned by the planted angle,
banks, edits in every space, and the report card's unwrapping of an angle."""

import json
import math

import numpy as np
import pytest
import torch

import latentlib as ll
from latentlib import shapes
from latentlib.directions import Direction, DirectionBank, Turn, space_shapes
from latentlib.edits import apply_vector_edits, check_edits
from latentlib.probes import load_probe
from latentlib.report import report_card
from latentlib.testing import tiny_sd_components


def _ring(n=800, shape=(4, 8, 8), seed=0, radii=(6.0, 3.0), centre=(2.0, -1.0)):
    """Gaussian noise plus a factor angle on an elliptic ring in the plane of two known orthonormal vectors;
    returns X, the angle, and the two vectors (flat)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(int(np.prod(shape)), 2)))
    u, v = q[:, 0].astype(np.float32), q[:, 1].astype(np.float32)
    angle = rng.uniform(-np.pi, np.pi, n)
    a, b = centre[0] + radii[0] * np.cos(angle), centre[1] + radii[1] * np.sin(angle)
    X = 0.3 * rng.normal(size=(n, u.size)) + a[:, None] * u + b[:, None] * v
    return X.astype(np.float32).reshape(n, *shape), angle, u, v


@pytest.fixture(scope="module")
def tiny():
    return ll.Model(**tiny_sd_components(), name="tiny")


def _wrap(a):
    return np.angle(np.exp(1j * a))


def test_pca_turn_finds_the_planted_ring_and_turns_by_the_planted_angle():
    X, angle, u, v = _ring()
    pca = ll.PCADirections(4).fit(X, space="xT")
    turn = pca.turn(0, 1, degrees=15.0, name="ring")
    assert turn.shape == (4, 8, 8) and turn.space == "xT" and turn.provenance["components"] == [0, 1]
    # the plane is the planted one (each vector inside span(u, v))
    basis = turn.vectors.reshape(2, -1).numpy()
    assert np.all(np.linalg.norm(basis @ np.stack([u, v]).T, axis=1) > 0.99)
    # the ring's angle is read back up to a fixed offset and orientation
    read = turn.angle(X)
    offsets = [abs(np.mean(np.exp(1j * (read - sign * angle)))) for sign in (1, -1)]
    assert max(offsets) > 0.98
    # strength 2 at 15 degrees per unit turns every sample 30 degrees round the ring, keeping its radius
    Xt = torch.from_numpy(X)
    moved = turn.apply(Xt, 2.0)
    turned = _wrap(turn.angle(moved.numpy()) - read)
    assert np.allclose(turned, math.radians(30.0), atol=1e-4)
    radius = np.linalg.norm((turn.project(X) - turn.centre) / turn.scales, axis=1)
    assert np.allclose(np.linalg.norm((turn.project(moved.numpy()) - turn.centre) / turn.scales, axis=1), radius,
                       rtol=1e-4)
    # the rest of each sample stays as it was; strength 0 returns the samples unchanged
    rest = (moved - Xt).reshape(len(X), -1).numpy()
    assert np.allclose(rest - (rest @ basis.T) @ basis, 0.0, atol=1e-4)
    assert torch.equal(turn.apply(Xt, 0.0), Xt)
    # the turn the other way round undoes it
    assert torch.allclose((-turn).apply(moved, 2.0), Xt, atol=1e-4)


def test_turn_checks_its_input():
    u, v = torch.zeros(4, 8, 8), torch.zeros(4, 8, 8)
    u[0, 0, 0], v[0, 0, 1] = 1.0, 1.0
    good = Turn(vectors=torch.stack([u, v]), space="xT")
    assert good.degrees == 10.0 and good.centre == (0.0, 0.0)
    with pytest.raises(ValueError, match=r"`vectors` must be two finite orthonormal vectors"):
        Turn(vectors=torch.stack([u, u]), space="xT")
    with pytest.raises(TypeError, match=r"`vectors` must be a float tensor of shape \(2, \*sample_shape\)"):
        Turn(vectors=u, space="xT")
    with pytest.raises(ValueError, match=r"`degrees` \(per unit of strength\) must be a finite number > 0, got 0"):
        Turn(vectors=torch.stack([u, v]), space="xT", degrees=0)
    with pytest.raises(ValueError, match=r"`scales` must be two finite numbers > 0, got \(1.0, -1.0\)"):
        Turn(vectors=torch.stack([u, v]), space="xT", scales=(1.0, -1.0))
    with pytest.raises(ValueError, match=r"`space` must be one of"):
        Turn(vectors=torch.stack([u, v]), space="w")
    with pytest.raises(ValueError, match=r"`second` is \(nearly\) parallel to `first`"):
        Turn.from_vectors(u, 2 * u, "xT")
    made = Turn.from_vectors(u + v, 3 * v, "xT")  # orthonormalised, keeping the first vector's direction
    assert torch.allclose(made.vectors[0], (u + v) / math.sqrt(2)) and torch.allclose(made.vectors[1], (v - u) / math.sqrt(2))
    with pytest.raises(ValueError, match=r"`i` and `j` must be two different components in 0..3, got 1 and 1"):
        ll.PCADirections(4).fit(_ring(n=50)[0], space="xT").turn(1, 1)


def test_turns_edit_every_space_and_strength_zero_changes_nothing(tiny):
    plain = tiny.generate("a cat", seed=0, steps=2, output="pt", progress=False)
    for space, shape in space_shapes(tiny).items():
        gen = torch.Generator().manual_seed(0)
        turn = Turn.from_vectors(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen), space,
                                 scales=(0.5, 0.5), centre=(0.0, 0.0), degrees=60.0)
        kwargs = {"image": plain, "strength": 0.8} if space == "z0" else {}
        base = tiny.generate("a cat", seed=0, steps=2, output="pt", progress=False, **kwargs)
        zero = tiny.generate("a cat", seed=0, steps=2, output="pt", progress=False, edits=[(turn, 0.0)], **kwargs)
        moved = tiny.generate("a cat", seed=0, steps=2, output="pt", progress=False, edits=[(turn, 2.0)], **kwargs)
        assert torch.equal(zero, base), space
        assert (moved - base).abs().max() > 1e-4, space
    # a prompt turn of (D,) vectors turns every token's embedding, each about the same centre
    emb = tiny.embed(["a cat", "a dog"]).embeds
    D = emb.shape[-1]
    gen = torch.Generator().manual_seed(1)
    turn = Turn.from_vectors(torch.randn(D, generator=gen), torch.randn(D, generator=gen), "prompt", degrees=90.0)
    moved = apply_vector_edits(check_edits([(turn, 1.0)]), "prompt", emb)
    before, after = turn.angle(emb.reshape(-1, D)), turn.angle(moved.reshape(-1, D))
    assert moved.shape == emb.shape and np.allclose(_wrap(after - before), math.pi / 2, atol=1e-4)
    # float64 samples stay float64, exactly unchanged at strength 0
    X64 = torch.randn(5, D, dtype=torch.float64)
    assert turn.apply(X64, 0.0).dtype == torch.float64 and torch.equal(turn.apply(X64, 0.0), X64)
    # a turn of another model's size is refused, naming the sizes
    small = Turn.from_vectors(torch.randn(8), torch.randn(8), "xT")
    with pytest.raises(ValueError, match=r"edit 0 in space 'xT' vectors have 8 values; this model's xT samples have "
                                         r"shape \(4, 8, 8\)"):
        tiny.generate("a cat", seed=0, steps=2, progress=False, edits=[(small, 1.0)])


def test_a_bank_keeps_turns_beside_directions(tiny, tmp_path):
    X, _, _, _ = _ring(n=200)
    pca = ll.PCADirections(3).fit(X, space="xT")
    bank = DirectionBank([pca.direction(0), pca.turn(0, 1, degrees=12.5, name="ring")], model=tiny)
    bank.save(tmp_path / "bank")
    loaded = DirectionBank.load(tmp_path / "bank", model=tiny)
    ring = loaded["ring"]
    assert isinstance(ring, Turn) and torch.equal(ring.vectors, bank["ring"].vectors)
    assert (ring.centre, ring.scales, ring.degrees) == (bank["ring"].centre, bank["ring"].scales, 12.5)
    assert ring.provenance == bank["ring"].provenance and isinstance(loaded["pc0"], ll.Direction)
    # a bank with a turn is format 2 (a latentlib from before turns refuses it by number); without, format 1
    assert json.loads((tmp_path / "bank.json").read_text())["format"] == 2
    _, plain = DirectionBank([pca.direction(0)], model=tiny).save(tmp_path / "plain")
    assert json.loads(plain.read_text())["format"] == 1
    meta = json.loads(plain.read_text())
    plain.write_text(json.dumps({**meta, "format": 3}))
    with pytest.raises(ValueError, match=r"is bank format 3; this latentlib reads formats 1, 2"):
        DirectionBank.load(tmp_path / "plain")
    plain.write_text(json.dumps({"figure": "map"}))  # some other JSON beside a .safetensors
    with pytest.raises(ValueError, match=r"plain.json is not a direction bank"):
        DirectionBank.load(tmp_path / "plain")
    with pytest.raises(ValueError, match=r"this bank's model has xT samples of shape \(4, 8, 8\)"):
        bank.add(Turn.from_vectors(torch.randn(4, 16, 16), torch.randn(4, 16, 16), "xT", name="wrong"))


class Spinner:
    """A stand-in model whose sweep renders a square turned by ``per_unit`` radians (of the square's own
    period, a quarter turn) per unit of strength, from a start angle that depends on the seed, so that the
    probe's angle reading wraps within the sweep for some seeds."""

    def __init__(self, per_unit=0.35):
        self.per_unit = per_unit

    def sweep(self, prompt, direction, strengths, *, seed, output, **kwargs):
        pics = []
        for s in strengths:
            turn = (2.4 * seed + self.per_unit * s) / 4  # the square's rotation; 4 x it is the read angle
            scene = shapes.Scene(shape="square", color="red", background="black", size=0.28, x=0.5, y=0.5,
                                 rotation=turn % (math.pi / 2))
            pics.append(np.asarray(shapes.render(scene), dtype=np.float32) / 255)
        return torch.from_numpy(np.stack(pics)).permute(0, 3, 1, 2)

    def decode(self, latents, output):
        return latents


class AngleProbe:
    """The default probe plus ``angle``: 4 x the square's rotation, in -pi..pi."""

    def __init__(self):
        self.probe = load_probe()
        self.classes = self.probe.classes

    def __call__(self, images):
        readings = self.probe(images)
        return {**readings, "angle": _wrap(4 * np.asarray(readings["rotation"], dtype=np.float64))}


def test_the_report_card_unwraps_a_circular_target():
    probe, turn = AngleProbe(), Turn(vectors=torch.eye(2).reshape(2, 2), space="xT", name="spin")
    strengths = [-3, -2, -1, 0, 1, 2, 3]
    card = report_card(Spinner(), turn, probe, target="angle", strengths=strengths, seeds=8, circular=2 * math.pi,
                       progress=False)
    t = card.target_row
    assert t["monotone_share"] == 1.0 and t["effect_per_unit"] == pytest.approx(0.35, abs=0.05)
    assert card.settings["circular"] == 2 * math.pi
    # anchored at strength 0: there the target is the probe's own reading
    zero = card.readings[card.readings["strength"] == 0]
    assert np.allclose(zero["target"], zero["angle"])
    # read without unwrapping, the seeds whose sweep crosses the wrap point are not monotone
    raw = report_card(Spinner(), turn, probe, target="angle", strengths=strengths, seeds=8, progress=False)
    assert raw.target_row["monotone_share"] < 1.0
    with pytest.raises(ValueError, match=r"`circular` must be None or the target's period, a finite number > 0"):
        report_card(Spinner(), turn, probe, target="angle", seeds=1, circular=-1.0, progress=False)


def test_best_turn_finds_the_planted_plane_and_its_orientation():
    from latentlib.discover import best_turn

    rng = np.random.default_rng(0)
    angle = rng.uniform(-np.pi, np.pi, 500)
    X = rng.normal(size=(500, 6)) * [5.0, 0.5, 0.5, 0.5, 0.5, 0.5]  # pc0 is noise with the most variance
    X[:, 2] += 3 * np.cos(angle)
    X[:, 4] -= 3 * np.sin(angle)  # the ring turns against the angle in (x2, x4)
    X = X.astype(np.float32)
    pca = ll.PCADirections(3).fit(X, space="prompt")
    turn, fit = best_turn(pca, X, angle, degrees=20.0, name="ring")
    assert turn.provenance["components"] == [1, 2] and fit > 0.95 and turn.degrees == 20.0
    # turned so that its angle rises with the planted one: a positive strength raises the planted angle
    read = turn.angle(X)
    assert abs(np.mean(np.exp(1j * (read - angle)))) > 0.95
    moved = turn.apply(torch.from_numpy(X), 1.0).numpy()
    assert np.allclose(_wrap(turn.angle(moved) - read), math.radians(20.0), atol=1e-4)
    with pytest.raises(ValueError, match=r"`angle` must hold one value per sample of `X` \(500\)"):
        best_turn(pca, X, angle[:10])
    with pytest.raises(ValueError, match=r"`components` must be an int in 2..3, got 1"):
        best_turn(pca, X, angle, components=1)
    with pytest.raises(ValueError, match=r"`angle` has 1 values that are NaN or inf"):
        best_turn(pca, X, np.where(np.arange(500) == 7, np.nan, angle))


def test_turns_in_orthogonalize_and_banks_of_unknown_kinds(tmp_path):
    X, _, u, _ = _ring(n=300)
    pca = ll.PCADirections(3).fit(X, space="xT")
    ring = pca.turn(0, 1, name="ring")
    d = ll.Direction.from_vector(torch.from_numpy(u + 0.5 * np.ones_like(u)).reshape(4, 8, 8), "xT", name="d")
    kept = ll.orthogonalize(d, [ring])  # the turn's plane is projected out
    assert abs(float(kept.vector.flatten() @ ring.vectors[0].flatten())) < 1e-5
    assert abs(float(kept.vector.flatten() @ ring.vectors[1].flatten())) < 1e-5
    with pytest.raises(TypeError, match=r"`direction` must be a Direction, got Turn"):
        ll.orthogonalize(ring, [d])
    with pytest.raises(TypeError, match=r"`other` must be a Direction \(a unit vector\), got Turn"):
        d.cosine(ring)
    bank = DirectionBank([ring])
    _, meta = bank.save(tmp_path / "bank")
    text = meta.read_text().replace('"kind": "turn"', '"kind": "spiral"')
    meta.write_text(text)
    with pytest.raises(ValueError, match=r"direction 'ring' is of kind 'spiral'; this latentlib reads 'direction' and "
                                         r"'turn'"):
        DirectionBank.load(tmp_path / "bank")


def test_the_rotation_meter_reads_a_turn_closely_and_a_lost_object_is_not_monotone():
    from latentlib.probes import RotationMeter, load_probe

    strengths = [-3, -2, -1, 0, 1, 2, 3]
    turn = Turn(vectors=torch.eye(2).reshape(2, 2), space="xT", name="spin")
    card = report_card(Spinner(), turn, RotationMeter(load_probe(), "square"), target="rotation_angle",
                       strengths=strengths, seeds=8, circular=2 * math.pi, progress=False)
    t = card.target_row
    assert t["monotone_share"] == 1.0 and t["effect_per_unit"] == pytest.approx(0.35, abs=0.01)  # planted 0.35
    assert t["linearity_r2"] > 0.999

    class Vanishing(Spinner):  # seed 1's object is gone at strength +3: no angle there
        def sweep(self, prompt, direction, strengths, *, seed, output, **kwargs):
            pics = super().sweep(prompt, direction, strengths, seed=seed, output=output)
            if seed == 1:
                pics[-1] = pics[-1][:, :1, :1].clone().expand_as(pics[-1])  # the background colour everywhere
            return pics

    lost = report_card(Vanishing(), turn, RotationMeter(load_probe(), "square"), target="rotation_angle",
                       strengths=strengths, seeds=4, circular=2 * math.pi, progress=False)
    per_seed = lost.per_seed.set_index("seed")
    assert np.isnan(per_seed.loc[1, "spearman"]) and (per_seed.drop(1)["spearman"] > 0.99).all()
    assert lost.target_row["monotone_share"] == 0.75 and lost.target_row["sign_share"] == 0.75
    assert lost.target_row["effect_per_unit"] == pytest.approx(0.35, abs=0.01)  # the median of the seeds that have one


def test_unwrapping_steps_over_a_missing_reading():
    from latentlib.report import _unwrap_rows

    period = 2 * math.pi
    steady = np.array([[-0.5, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5]])  # a steady turn of 1 rad per step, past pi
    wrapped = np.vectorize(_wrap)(steady)
    assert not np.allclose(wrapped, steady)
    assert np.allclose(_unwrap_rows(wrapped, period, 3), steady)  # agrees with strength 0's reading
    assert np.allclose(_unwrap_rows(wrapped, period, 6), steady - 2 * math.pi)
    gap = wrapped.copy()
    gap[0, 4] = np.nan  # mid-sweep: the readings on either side are unwrapped against each other
    out = _unwrap_rows(gap, period, 3)
    assert np.isnan(out[0, 4]) and np.allclose(np.delete(out[0], 4), np.delete(steady[0], 4))
    gap[0, 3] = np.nan  # strength 0's reading missing too: anchored at the nearest finite one (column 2)
    out = _unwrap_rows(gap, period, 3)
    assert np.isclose(out[0, 2], wrapped[0, 2]) and np.allclose(np.diff(out[0, [0, 1, 2, 5, 6]]), [1, 1, 3, 1])
    assert np.isnan(_unwrap_rows(np.full((1, 4), np.nan), period, 1)).all()


def test_a_rolled_turn_follows_an_object_moved_on_the_grid():
    rng = torch.Generator().manual_seed(0)
    turn = Turn.from_vectors(torch.randn(4, 8, 8, generator=rng), torch.randn(4, 8, 8, generator=rng), "xT",
                             name="spin", centre=(0.3, -0.2), scales=(2.0, 0.5))
    moved = turn.rolled(1, -2)
    assert torch.equal(moved.vectors, torch.roll(turn.vectors, shifts=(1, -2), dims=(-2, -1)))
    assert moved.centre == turn.centre and moved.scales == turn.scales and moved.provenance["rolled"] == [1, -2]
    # a sample moved by the same cells is turned exactly as the original, moved
    X = torch.randn(3, 4, 8, 8, generator=rng)
    shifted = torch.roll(X, shifts=(1, -2), dims=(-2, -1))
    assert torch.allclose(moved.apply(shifted, 1.5), torch.roll(turn.apply(X, 1.5), shifts=(1, -2), dims=(-2, -1)),
                          atol=1e-5)
    assert turn.rolled(0, 0) is turn and torch.equal(moved.rolled(-1, 2).vectors, turn.vectors)
    with pytest.raises(TypeError, match=r"`dx` must be a whole number of cells, got 0.5"):
        turn.rolled(1, 0.5)
    prompt_turn = Turn.from_vectors(torch.randn(16, generator=rng), torch.randn(16, generator=rng), "prompt")
    assert turn.rollable and not prompt_turn.rollable
    with pytest.raises(ValueError, match=r"rolled\(\) needs spatial samples \(C, H, W\); this prompt turn's samples "
                                         r"have shape \(16,\)"):
        prompt_turn.rolled(1, 0)


class Follower:
    """A stand-in model whose unedited image puts the square ``seed`` cells right of the middle (8 cells to the
    side) and whose sweep turns it only when the turn's vectors were rolled to it: a turn fitted on centred
    objects reaches an off-middle one only when it follows it."""

    def _render(self, seed, turn):
        scene = shapes.Scene(shape="square", color="red", background="black", size=0.15, x=0.5 + seed / 8, y=0.5,
                             rotation=turn % (math.pi / 2))
        return torch.from_numpy(np.asarray(shapes.render(scene), dtype=np.float32) / 255).permute(2, 0, 1)

    def generate(self, prompt, *, seed, output, **kwargs):
        return self._render(seed, 0.3)[None]

    def sweep(self, prompt, direction, strengths, *, seed, output, **kwargs):
        follows = direction.provenance.get("rolled", [0, 0]) == [0, seed]
        return torch.stack([self._render(seed, 0.3 + (0.1 * s if follows else 0.0)) for s in strengths])

    def decode(self, latents, output):
        return latents


def test_the_report_card_rolls_a_turn_to_each_seeds_object():
    from latentlib.probes import RotationMeter, load_probe
    from latentlib.report import follow_object

    rng = torch.Generator().manual_seed(1)
    turn = Turn.from_vectors(torch.randn(4, 8, 8, generator=rng), torch.randn(4, 8, 8, generator=rng), "xT", name="spin")
    probe = load_probe()
    kw = {"target": "rotation_angle", "strengths": [-2, -1, 0, 1, 2], "seeds": [0, 1, 2], "circular": 2 * math.pi,
          "progress": False}
    still = report_card(Follower(), turn, RotationMeter(probe, "square"), **kw)
    assert still.target_row["monotone_share"] == pytest.approx(1 / 3)  # only the centred seed turns
    followed = report_card(Follower(), turn, RotationMeter(probe, "square"),
                           follow=follow_object(probe, centre=(0.5, 0.5), cells=8), **kw)
    assert followed.target_row["monotone_share"] == 1.0 and followed.settings["follow"] is True
    assert followed.per_seed["dx"].tolist() == [0, 1, 2] and followed.per_seed["dy"].tolist() == [0, 0, 0]
    with pytest.raises(TypeError, match=r"`follow` rolls the direction per seed, which needs a `rolled\(dy, dx\)` "
                                        r"method \(a Turn in xT, z0 or h\); got a Direction in xT"):
        report_card(Follower(), Direction.from_vector(torch.ones(4, 8, 8), "xT", name="x"), probe, follow=lambda im: (0, 0),
                    **{**kw, "target": "x", "circular": None})
    with pytest.raises(ValueError, match=r"`follow` must return \(dy, dx\), two whole numbers of cells; got 0.5 for seed 0"):
        report_card(Follower(), turn, RotationMeter(probe, "square"), follow=lambda im: 0.5, **kw)
    with pytest.raises(ValueError, match=r"`cells` must be a whole number >= 1"):
        follow_object(probe, centre=(0.5, 0.5), cells=0)
    # a grid of 8 rows and 4 columns: the square 2/8 of the width right of the centre is 1 column away
    assert follow_object(probe, centre=(0.5, 0.5), cells=(8, 4))(Follower()._render(2, 0.3)) == (0, 1)
    assert follow_object(probe, centre=(0.25, 0.5), cells=8)(Follower()._render(2, 0.3)) == (0, 4)
    with pytest.raises(ValueError, match=r"`centre` must be \(x, y\) within 0..1 .*got \(0.5, 50\)"):
        follow_object(probe, centre=(0.5, 50), cells=8)
    with pytest.raises(ValueError, match=r"`centre` must be \(x, y\), two numbers, got 0.5"):
        follow_object(probe, centre=0.5, cells=8)
