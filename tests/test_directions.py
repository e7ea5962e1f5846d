"""Directions, banks and finders: checked against scikit-learn and planted directions on synthetic data."""

import numpy as np
import pytest
import torch

import latentlib as ll
from latentlib.directions import Direction, DirectionBank, model_signature, space_shapes
from latentlib.testing import tiny_sd_components


def _planted(n=600, shape=(4, 8, 8), seed=0, strength=6.0):
    """Gaussian samples plus a planted factor along a known unit direction; returns X, factor, direction."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=int(np.prod(shape))).astype(np.float32)
    d /= np.linalg.norm(d)
    factor = rng.normal(size=n).astype(np.float32)
    X = rng.normal(size=(n, d.size)).astype(np.float32) + strength * factor[:, None] * d
    return X.reshape(n, *shape), factor, d


@pytest.mark.parametrize("method", ["auto", "full", "randomized", "incremental", "lowrank"])
def test_pca_matches_scikit_learn_and_finds_the_planted_direction(method):
    from sklearn.decomposition import PCA

    X, _, d = _planted()
    ours = ll.PCADirections(4, method=method, batch_size=200).fit(X, space="z0")
    ref = PCA(4, svd_solver="full").fit(X.reshape(len(X), -1))
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=0.05, atol=2e-3)
    assert abs(float(ours.components_[0] @ ref.components_[0])) > 0.99  # same first axis, up to sign
    assert abs(float(ours.components_[0] @ d)) > 0.98  # the planted direction
    z = ours.transform(X)
    assert z.shape == (600, 4)
    back = ours.inverse_transform(z)
    assert back.shape == X.shape
    np.testing.assert_allclose(ours.transform(back), z, atol=1e-3)  # fit/transform consistency
    first = ours.direction(0)
    assert first.space == "z0" and first.shape == (4, 8, 8) and abs(float(first.vector.norm()) - 1) < 1e-5
    assert first.scale == pytest.approx(float(np.sqrt(ours.explained_variance_[0])))
    assert first.provenance["method"] == f"pca ({method})" and first.provenance["samples"] == 600


def test_incremental_pca_fed_in_batches_matches_one_fit():
    X, _, d = _planted()
    whole = ll.PCADirections(4, method="incremental", batch_size=200).fit(X)
    fed = ll.PCADirections(4, method="incremental", batch_size=200)
    for begin in range(0, 600, 200):
        fed.partial_fit(X[begin : begin + 200], space="xT")
    np.testing.assert_allclose(fed.explained_variance_ratio_, whole.explained_variance_ratio_, rtol=1e-4)
    assert abs(float(fed.components_[0] @ d)) > 0.98 and fed.n_samples_ == 600
    assert fed.direction(0).space == "xT"
    with pytest.raises(ValueError, match="partial_fit needs method='incremental'"):
        ll.PCADirections(2).partial_fit(X)


@pytest.mark.parametrize("finder", [ll.MeanDifference(), ll.LinearBoundary("logistic"), ll.LinearBoundary("svm")])
def test_supervised_finders_recover_the_planted_direction(finder):
    X, factor, d = _planted(n=2000, strength=3.0)
    y = np.where(factor > 0, "big", "small")
    direction = finder.fit(X, y).direction("h", name="size", X=X)
    assert abs(direction.cosine(Direction.from_vector(torch.from_numpy(d).reshape(4, 8, 8), "h"))) > 0.85
    # classes sort as ["big", "small"]: the direction points to "small", i.e. against the factor
    assert direction.cosine(Direction.from_vector(torch.from_numpy(d).reshape(4, 8, 8), "h")) < 0
    assert direction.scale == pytest.approx(float(np.std(direction.project(X))), rel=1e-4)


def test_orthogonalize_projects_out_and_keeps_the_rest():
    a = Direction.from_vector(torch.tensor([1.0, 1.0, 0.0]), "xT", name="a")
    b = Direction.from_vector(torch.tensor([1.0, 0.0, 0.0]), "xT", name="b")
    c = ll.orthogonalize(a, [b])
    assert abs(c.cosine(b)) < 1e-6 and c.cosine(a) > 0.7
    with pytest.raises(ValueError, match="lies in the span of the others"):
        ll.orthogonalize(b, [a, Direction.from_vector(torch.tensor([0.0, 1.0, 0.0]), "xT", name="y")])


def test_direction_checks_its_input():
    with pytest.raises(ValueError, match=r"`vector` must have unit norm, got 2; use Direction.from_vector"):
        Direction(vector=torch.tensor([2.0, 0.0]), space="xT")
    with pytest.raises(ValueError, match=r"`space` must be one of xT, z0, prompt, h; got 'w'"):
        Direction.from_vector(torch.ones(3), "w")
    with pytest.raises(ValueError, match=r"has norm 0.0"):
        Direction.from_vector(torch.zeros(3), "xT")
    with pytest.raises(ValueError, match=r"`scale` must be a finite number > 0"):
        Direction.from_vector(torch.ones(3), "xT", scale=0.0)


@pytest.fixture(scope="module")
def tiny():
    return ll.Model(**tiny_sd_components(), name="tiny")


def test_space_shapes_and_signature(tiny):
    shapes = space_shapes(tiny)
    assert shapes["xT"] == shapes["z0"] == (4, 8, 8) and shapes["prompt"] == (77, 32)
    captured = []
    handle = tiny.unet.mid_block.register_forward_hook(lambda m, a, out: captured.append(tuple(out.shape[1:])))
    tiny.generate("a cat", steps=1, progress=False)
    handle.remove()
    assert shapes["h"] == captured[0]
    sig = model_signature(tiny)
    assert sig == model_signature(tiny) and len(sig["weight_hash"]) == 16
    other = ll.Model(**tiny_sd_components(seed=1), name="tiny")
    assert model_signature(other)["weight_hash"] != sig["weight_hash"]


def test_bank_round_trip_and_refusals(tiny, tmp_path):
    X, _, _ = _planted(n=200)
    pca = ll.PCADirections(3).fit(X, space="xT")
    bank = DirectionBank([pca.direction(i) for i in range(3)], model=tiny)
    bank.add(Direction.from_vector(torch.randn(77, 32), "prompt", name="text", timesteps=None))
    tensors, meta = bank.save(tmp_path / "bank")
    assert tensors.name == "bank.safetensors" and meta.name == "bank.json"
    loaded = DirectionBank.load(tmp_path / "bank.safetensors", model=tiny)
    assert list(loaded) == ["pc0", "pc1", "pc2", "text"]
    for name in bank:
        assert torch.equal(loaded[name].vector, bank[name].vector) and loaded[name].scale == bank[name].scale
        assert loaded[name].provenance == bank[name].provenance
    with pytest.raises(FileExistsError, match=r"bank.safetensors exists; pass overwrite=True"):
        bank.save(tmp_path / "bank")
    with pytest.raises(ValueError, match=r"already has a direction named 'pc0'"):
        bank.add(pca.direction(0))
    with pytest.raises(KeyError, match=r"no direction named 'pc9'"):
        bank["pc9"]
    bigger = ll.Model(**tiny_sd_components(sample_size=16), name="bigger")
    with pytest.raises(ValueError, match=r"made for 'tiny', whose prompt samples .*|made for 'tiny', whose xT samples "
                                         r"have shape \(4, 8, 8\); 'bigger' has \(4, 16, 16\)"):
        DirectionBank.load(tmp_path / "bank", model=bigger)
    with pytest.raises(ValueError, match=r"this bank's model has xT samples of shape \(4, 8, 8\)"):
        bank.add(Direction.from_vector(torch.ones(4, 16, 16), "xT", name="wrong"))
    with pytest.raises(FileNotFoundError, match=r"no direction bank at"):
        DirectionBank.load(tmp_path / "nothing")


def test_a_bank_direction_edits_generation(tiny):
    """A zero-strength edit changes nothing; a non-zero one moves the image, in every space."""
    plain = tiny.generate("a cat", seed=0, steps=2, output="pt", progress=False)
    for space, shape in space_shapes(tiny).items():
        d = Direction.from_vector(torch.randn(shape, generator=torch.Generator().manual_seed(0)), space, scale=3.0)
        kwargs = {"image": plain, "strength": 0.8} if space == "z0" else {}
        base = tiny.generate("a cat", seed=0, steps=2, output="pt", progress=False, **kwargs)
        zero = tiny.generate("a cat", seed=0, steps=2, output="pt", progress=False, edits=[(d, 0.0)], **kwargs)
        moved = tiny.generate("a cat", seed=0, steps=2, output="pt", progress=False, edits=[(d, 3.0)], **kwargs)
        assert torch.equal(zero, base), space
        assert (moved - base).abs().max() > 1e-4, space


def test_text_direction_moves_one_prompt_to_the_other(tiny):
    d = ll.text_direction(tiny, "a red circle", "a blue circle")
    a, b = tiny.embed("a red circle").embeds[0], tiny.embed("a blue circle").embeds[0]
    moved = a + d.scale * d.vector
    torch.testing.assert_close(moved, b, atol=1e-5, rtol=0)


def test_ridge_recovers_a_continuous_factor_and_checks_its_input():
    X, factor, d = _planted(n=2000, strength=3.0)
    truth = Direction.from_vector(torch.from_numpy(d).reshape(4, 8, 8), "h")
    direction = ll.RidgeDirection().fit(X, factor).direction("h", name="size", X=X)
    assert direction.cosine(truth) > 0.85  # points the way the factor grows
    assert direction.provenance["method"] == "ridge regression" and direction.provenance["alpha"] == 256.0
    with pytest.raises(ValueError, match="constant"):
        ll.RidgeDirection().fit(X, np.ones(len(X)))
    with pytest.raises(ValueError, match="one finite value per sample"):
        ll.RidgeDirection().fit(X, factor[:10])
    with pytest.raises(ValueError, match="alpha"):
        ll.RidgeDirection(alpha=-1)


def test_layered_h_directions_in_banks(tiny, tmp_path):
    """A bank records each layer's h shape; loading checks it, and a model without that layer is refused."""
    shapes = space_shapes(tiny, ["up_blocks.0"])
    assert shapes["h@up_blocks.0"] != shapes["h"]
    bank = DirectionBank(model=tiny)
    up = Direction.from_vector(torch.randn(shapes["h@up_blocks.0"]), "h", name="up", layer="up_blocks.0",
                               timesteps=(900, 100))
    bank.add(up)
    bank.add(Direction.from_vector(torch.randn(shapes["h"]), "h", name="mid"))
    assert bank.model["shapes"]["h@up_blocks.0"] == list(shapes["h@up_blocks.0"])
    with pytest.raises(ValueError, match=r"model has h \(layer up_blocks.0\) samples of shape"):
        bank.add(Direction.from_vector(torch.randn(shapes["h"]), "h", name="wrong", layer="up_blocks.0"))
    bank.save(tmp_path / "layers")
    loaded = DirectionBank.load(tmp_path / "layers", model=tiny)
    assert loaded["up"].layer == "up_blocks.0" and loaded["mid"].layer is None
    assert loaded["up"].timesteps == (900.0, 100.0) and torch.equal(loaded["up"].vector, up.vector)
    flat = ll.orthogonalize(loaded["up"], [Direction.from_vector(torch.randn(shapes["h@up_blocks.0"]), "h", name="o",
                                                                  layer="up_blocks.0")])
    assert flat.layer == "up_blocks.0"
    with pytest.raises(ValueError, match=r"cannot compare a h@up_blocks.0 direction of \d+ values with a h direction"):
        loaded["up"].cosine(Direction.from_vector(torch.randn(shapes["h@up_blocks.0"]), "h"))
    with pytest.raises(ValueError, match=r"cannot orthogonalise a h@up_blocks.0 direction against 'mid' \(h,"):
        ll.orthogonalize(loaded["up"], [Direction.from_vector(torch.randn(shapes["h@up_blocks.0"]), "h", name="mid")])
    fewer = ll.Model(**tiny_sd_components(), name="fewer")
    fewer.unet.up_blocks = fewer.unet.up_blocks[:0]  # a UNet without that block (never run)
    with pytest.raises(ValueError, match=r"made for 'tiny'; `layer` 'up_blocks.0' is not a module of this UNet"):
        DirectionBank.load(tmp_path / "layers", model=fewer)
    with pytest.raises(ValueError, match=r"`layer` \('up_blocks.0'\) applies to h directions only; this one is in xT"):
        Direction.from_vector(torch.ones(4, 8, 8), "xT", layer="up_blocks.0")
