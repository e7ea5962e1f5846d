"""collect: samples of every space, equal to computing them by hand, with metadata, labels and a disk cache."""

import numpy as np
import pytest
import torch

import latentlib as ll
from latentlib.edits import bottleneck_hook
from latentlib.testing import tiny_sd_components


@pytest.fixture(scope="module")
def tiny():
    return ll.Model(**tiny_sd_components(), name="tiny")


class FakeProbe:
    name = "fake-probe-v1"

    def __call__(self, images):
        images = torch.as_tensor(images)
        brightness = images.float().mean(dim=(1, 2, 3)).numpy()
        return {"brightness": brightness, "bright": np.where(brightness > 0.5, "yes", "no").astype(object)}


def _unet_calls(model):
    calls = []
    handle = model.unet.register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


def test_xT_and_prompt_samples_are_the_noise_and_the_embeddings(tiny, tmp_path):
    xt = ll.collect(tiny, "xT", seeds=4, prompts="a cat", cache_dir=tmp_path, progress=False)
    assert torch.equal(xt.X, tiny.noise([0, 1, 2, 3]))
    assert xt.meta == [{"seed": s, "prompt": "a cat"} for s in range(4)] and xt.labels is None
    prompts = ["a cat", "a red dog", "a blue cat"]
    pr = ll.collect(tiny, "prompt", prompts=prompts, cache_dir=tmp_path, progress=False)
    assert torch.equal(pr.X, tiny.embed(prompts).embeds)


def test_h_samples_are_the_bottleneck_at_the_chosen_step(tiny, tmp_path):
    prompts, seeds = ["a cat", "a dog", "a red cat"], [3, 4, 5]
    got = ll.collect(tiny, "h", prompts=prompts, seeds=seeds, steps=3, h_step=1, batch_size=2, cache_dir=tmp_path,
                     progress=False)
    seen = []
    handle = bottleneck_hook(tiny.unet, lambda h: seen.append(h.clone()))
    tiny.generate(prompts, seed=seeds, steps=3, progress=False)
    handle.remove()
    by_hand = seen[1][3:]  # step 1, the conditional half of [uncond, cond]
    torch.testing.assert_close(got.X, by_hand, atol=1e-5, rtol=1e-5)
    assert got.settings["h_step"] == 1


def test_z0_from_images_and_from_prompts(tiny, tmp_path):
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    enc = ll.collect(tiny, "z0", images=images, cache_dir=tmp_path, progress=False)
    assert torch.equal(enc.X, tiny.encode(images)) and enc.meta[2] == {"image": 2}
    gen = ll.collect(tiny, "z0", prompts="a cat", seeds=[7, 8], steps=2, cache_dir=tmp_path, progress=False)
    assert torch.equal(gen.X, tiny.generate("a cat", seed=[7, 8], steps=2, output="latent", progress=False))


def test_probe_labels_and_the_cache(tiny, tmp_path):
    kwargs = {"prompts": "a cat", "seeds": [0, 1, 2], "steps": 2, "probe": FakeProbe(), "cache_dir": tmp_path,
              "progress": False}
    first = ll.collect(tiny, "h", **kwargs)
    images = tiny.generate("a cat", seed=[0, 1, 2], steps=2, output="pt", progress=False)
    np.testing.assert_allclose(first.labels["brightness"], images.mean(dim=(1, 2, 3)).numpy(), rtol=1e-5)
    calls, handle = _unet_calls(tiny)
    again = ll.collect(tiny, "h", **kwargs)
    handle.remove()
    assert again.from_cache and not first.from_cache and calls == []  # loaded, not recomputed
    assert torch.equal(again.X, first.X) and again.meta == first.meta
    np.testing.assert_array_equal(again.labels["brightness"], first.labels["brightness"])
    assert list(again.labels["bright"]) == list(first.labels["bright"])
    calls, handle = _unet_calls(tiny)
    other = ll.collect(tiny, "h", **{**kwargs, "steps": 3})  # anything different: a new entry
    handle.remove()
    assert not other.from_cache and calls


def test_bad_input_is_named(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"`space` must be one of xT, z0, prompt, h; got 'w'"):
        ll.collect(tiny, "w", seeds=2)
    with pytest.raises(ValueError, match=r"`images` are collected in the z0 space only; got space 'h'"):
        ll.collect(tiny, "h", images=torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"`prompts` lists 2 prompts but `seeds` lists 3"):
        ll.collect(tiny, "xT", prompts=["a", "b"], seeds=[1, 2, 3])
    with pytest.raises(ValueError, match=r"`h_step` must be a step index in \[0, 3\], got 4"):
        ll.collect(tiny, "h", seeds=2, steps=4, h_step=4)
    with pytest.raises(ValueError, match=r"give `prompts`, `seeds` or `images`"):
        ll.collect(tiny, "xT")



def test_h_on_the_default_model_with_its_probe(tmp_path):
    """The default model's UNet has no mid block; its h samples (128x4x4) and probe labels line up."""
    from latentlib import probes

    model, probe = ll.load(), probes.load_probe()
    got = ll.collect(model, "h", prompts="a large red circle", seeds=4, steps=4, probe=probe, cache_dir=tmp_path,
                     progress=False)
    assert got.X.shape == (4, 128, 4, 4)
    images = model.generate("a large red circle", seed=[0, 1, 2, 3], steps=4, output="pt", progress=False)
    np.testing.assert_allclose(got.labels["x"], probe(images)["x"], atol=1e-5)
    assert list(got.labels["shape"]) == list(probe(images)["shape"])


def test_h_samples_at_another_layer(tiny, tmp_path):
    """``h_layer`` collects that block's output (its own cache entry); "bottleneck" is the default's."""
    from latentlib.edits import h_hook

    prompts, seeds = ["a cat", "a dog"], [3, 4]
    kw = dict(prompts=prompts, seeds=seeds, steps=3, h_step=2, cache_dir=tmp_path, progress=False)
    got = ll.collect(tiny, "h", h_layer="up_blocks.0", **kw)
    seen = []
    handle = h_hook(tiny.unet, lambda h: seen.append(h.clone()), "up_blocks.0")
    tiny.generate(prompts, seed=seeds, steps=3, progress=False)
    handle.remove()
    torch.testing.assert_close(got.X, seen[2][2:], atol=1e-5, rtol=1e-5)
    assert got.settings["h_layer"] == "up_blocks.0"
    plain = ll.collect(tiny, "h", **kw)
    assert plain.key != got.key and "h_layer" not in plain.settings
    assert ll.collect(tiny, "h", h_layer="bottleneck", **kw).key == plain.key
    with pytest.raises(ValueError, match=r"`layer` 'nowhere' is not a module of this UNet"):
        ll.collect(tiny, "h", h_layer="nowhere", **kw)
    with pytest.raises(ValueError, match=r"`h_layer` \('up_blocks.0'\) applies to the h space only; got space 'xT'"):
        ll.collect(tiny, "xT", seeds=2, h_layer="up_blocks.0", cache_dir=tmp_path, progress=False)
