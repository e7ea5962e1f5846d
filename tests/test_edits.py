"""Edits in the four spaces, applied by generate: each equals doing the same move by hand."""

from types import SimpleNamespace

import pytest
import torch

KW = dict(steps=3, guidance=4.0, output="latent", progress=False)


def _direction(space, vector, **extra):
    return SimpleNamespace(space=space, vector=vector, **extra)


def test_xT_edit_equals_moving_the_noise(sd):
    v = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(0))
    x = sd.noise(seed=3)
    edited = sd.generate("a cat", seed=3, edits=[(_direction("xT", v, scale=0.5), 2.0)], **KW)
    by_hand = sd.generate("a cat", latents=x + 1.0 * v, seed=3, **KW)
    torch.testing.assert_close(edited, by_hand)


def test_prompt_edit_equals_moving_the_embedding(sd):
    e = sd.embed("a cat")
    v = torch.randn(32, generator=torch.Generator().manual_seed(1))  # (D,): the same move on every token
    edited = sd.generate(e, seed=0, edits=[(_direction("prompt", v), 0.5)], negative_prompt="", **KW)
    moved = type(e)(embeds=e.embeds + 0.5 * v)
    by_hand = sd.generate(moved, seed=0, negative_prompt="", **KW)
    torch.testing.assert_close(edited, by_hand)


def test_z0_edit_equals_moving_the_start_image(sd, images):
    z0 = sd.encode(images[:1])
    v = torch.randn(1, 4 * 8 * 8, generator=torch.Generator().manual_seed(2))  # flat is fine
    kw = dict(KW, strength=0.5)
    edited = sd.generate("a cat", image=z0, seed=1, edits=[(_direction("z0", v), -1.5)], **kw)
    by_hand = sd.generate("a cat", image=z0 - 1.5 * v.reshape(1, 4, 8, 8), seed=1, **kw)
    torch.testing.assert_close(edited, by_hand)


def test_h_edit_hooks_the_mid_block_only_inside_its_window(sd):
    captured = []
    handle = sd.unet.mid_block.register_forward_hook(lambda m, a, out: captured.append(out.shape))
    try:
        plain = sd.generate("a cat", seed=0, **KW)
    finally:
        handle.remove()
    h_shape = captured[0][1:]
    v = torch.randn(h_shape, generator=torch.Generator().manual_seed(3))
    edited = sd.generate("a cat", seed=0, edits=[(_direction("h", v), 1.0)], **KW)
    assert not torch.allclose(edited, plain)
    from latentlib.schedulers import make_scheduler

    sched = make_scheduler(None, sd.scheduler)
    sched.set_timesteps(3)
    ts = sched.timesteps.tolist()  # e.g. [667, 334, 1]
    outside = sd.generate("a cat", seed=0, edits=[(_direction("h", v, timesteps=(ts[-1] - 1, 0)), 1.0)], **KW)
    torch.testing.assert_close(outside, plain)  # no step falls in the window
    first_only = sd.generate("a cat", seed=0, edits=[(_direction("h", v, timesteps=(ts[0], ts[0])), 1.0)], **KW)
    assert not torch.allclose(first_only, plain) and not torch.allclose(first_only, edited)
    zero = sd.generate("a cat", seed=0, edits=[(_direction("h", torch.zeros(h_shape)), 5.0)], **KW)
    torch.testing.assert_close(zero, plain)
    assert len(sd.unet.mid_block._forward_hooks) == 0  # the hook is gone afterwards


@pytest.mark.parametrize(
    "edits, kwargs, error, match",
    [
        ([(_direction("w", torch.zeros(3)), 1.0)], {}, ValueError, r"space 'w'; accepted spaces are xT, z0, prompt, h"),
        ([(_direction("xT", torch.zeros(5)), 1.0)], {}, ValueError, r"edit 0 in space 'xT' has 5 values.*\(4, 8, 8\)"),
        ([(_direction("xT", torch.zeros(256)), float("nan"))], {}, ValueError, r"strength nan; it must be a finite"),
        ([(_direction("z0", torch.zeros(256)), 1.0)], {}, ValueError, r"z0 edit.*pass an `image`"),
        ([(_direction("xT", [0.0] * 256), 1.0)], {}, TypeError, r"needs a float tensor `vector`, got list"),
        ([_direction("xT", torch.zeros(256))], {}, TypeError, r"`edits\[0\]` must be a \(direction, strength\) pair"),
        ("xT", {}, TypeError, r"`edits` must be a list"),
        ([(_direction("h", torch.zeros(3), timesteps=(0, 500)), 1.0)], {}, ValueError, r"high >= low"),
    ],
)
def test_bad_edits(sd, edits, kwargs, error, match):
    with pytest.raises(error, match=match):
        sd.generate("a cat", seed=0, edits=edits, **KW, **kwargs)


def test_h_edit_at_another_layer_equals_moving_that_layers_output(sd):
    """A direction with ``layer="up_blocks.1"`` is added to that block's output (and only there)."""
    from latentlib.edits import h_hook, h_layers

    assert h_layers(sd.unet)[0] == "bottleneck" and "up_blocks.1" in h_layers(sd.unet)
    assert "mid_block" in h_layers(sd.unet) and "down_blocks.0" in h_layers(sd.unet)
    shapes = []
    handle = sd.unet.up_blocks[1].register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape[1:])))
    plain = sd.generate("a cat", seed=0, **KW)
    handle.remove()
    v = torch.randn(shapes[0], generator=torch.Generator().manual_seed(4))
    edited = sd.generate("a cat", seed=0, edits=[(_direction("h", v, scale=2.0, layer="up_blocks.1"), 0.5)], **KW)
    handle = h_hook(sd.unet, lambda h: h + 1.0 * v, "up_blocks.1")
    try:
        by_hand = sd.generate("a cat", seed=0, **KW)
    finally:
        handle.remove()
    torch.testing.assert_close(edited, by_hand)
    assert not torch.allclose(edited, plain) and len(sd.unet.up_blocks[1]._forward_hooks) == 0
    zero = sd.generate("a cat", seed=0, edits=[(_direction("h", torch.zeros(shapes[0]), layer="up_blocks.1"), 3.0)], **KW)
    torch.testing.assert_close(zero, plain)
    down = []  # a down block returns (h, skips): h is the first element, and the edit lands there
    handle = h_hook(sd.unet, lambda h: down.append(h.shape) or None, "down_blocks.0")
    sd.generate("a cat", seed=0, **KW)
    handle.remove()
    assert len(down[0]) == 4


@pytest.mark.parametrize(
    "layer, space, error, match",
    [
        ("up_blocks.9", "h", ValueError, r"`layer` 'up_blocks.9' is not a module of this UNet; use one of bottleneck, "
                                         r"down_blocks.0"),
        ("up_blocks.0", "xT", ValueError, r"`edits\[0\]` has layer 'up_blocks.0'; a layer is a UNet module name, "
                                          r"for h edits only \(this edit is in xT\)"),
    ],
)
def test_bad_layers(sd, layer, space, error, match):
    with pytest.raises(error, match=match):
        sd.generate("a cat", seed=0, edits=[(_direction(space, torch.zeros(256), layer=layer), 1.0)], **KW)
