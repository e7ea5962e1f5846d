"""latentlib.inpaint: latent blend against diffusers' StableDiffusionInpaintPipeline, paste-back that leaves
every pixel outside the (grown, feathered) mask alone, the mask controls, and bad input."""

import numpy as np
import PIL.Image
import pytest
import torch

from latentlib import masks
from latentlib.inpaint import inpaint

TOL = 1e-4


@pytest.fixture(scope="module")
def inpaint_pipe(sd):
    from diffusers import StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline(
        vae=sd.vae, unet=sd.unet, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, scheduler=sd.scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def as_pil(pixels: torch.Tensor) -> PIL.Image.Image:
    return PIL.Image.fromarray((pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


@pytest.mark.parametrize("strength", [0.75, 1.0])
@pytest.mark.parametrize("guidance", [1.0, 5.0])
def test_blend_matches_diffusers_inpaint_pipeline(sd, inpaint_pipe, images, strength, guidance):
    image = as_pil(images[0])
    mask = masks.box((64, 64), 16, 8, 48, 40)  # on the 8-pixel grid: diffusers' binarised nearest resize agrees
    ours = inpaint(sd, image, mask, "a red circle", strength=strength, steps=4, guidance=guidance, seed=7,
                   paste_back=False, output="pt", progress=False)
    mask_image = PIL.Image.fromarray((mask.numpy() * 255).astype(np.uint8))
    ref = inpaint_pipe("a red circle", image=image, mask_image=mask_image, strength=strength, num_inference_steps=4,
                       guidance_scale=guidance, generator=torch.Generator().manual_seed(7), output_type="pt").images
    assert ours.shape == ref.shape == (1, 3, 64, 64)
    assert (ours - ref).abs().max().item() <= TOL


def test_paste_back_keeps_every_pixel_outside_the_feathered_mask(sd, images):
    image = as_pil(images[1])
    mask = masks.box((64, 64), 20, 20, 36, 36)
    out = inpaint(sd, image, mask, "a blue square", steps=3, seed=[1, 2], grow=2, feather=6, progress=False)
    assert len(out) == 2
    outside = (masks.grow(masks.grow(mask, 2), 6) == 0).numpy()
    before = np.asarray(image)
    for result in out:
        after = np.asarray(result)
        assert np.abs(after[outside].astype(int) - before[outside].astype(int)).max() <= 1
        assert np.abs(after[~outside].astype(int) - before[~outside].astype(int)).max() > 10  # repainted inside
    raw = inpaint(sd, image, mask, "a blue square", steps=3, seed=1, paste_back=False, progress=False)[0]
    assert np.abs(np.asarray(raw)[outside].astype(int) - before[outside].astype(int)).max() > 1  # VAE round trip


def test_same_seed_same_result_and_masked_content_choices(sd, images):
    image = as_pil(images[2])
    mask = masks.box((64, 64), 8, 8, 40, 40)
    a = inpaint(sd, image, mask, "a cat", strength=0.6, steps=3, seed=4, progress=False, output="pt")
    b = inpaint(sd, image, mask, "a cat", strength=0.6, steps=3, seed=4, progress=False, output="pt")
    assert torch.equal(a, b)
    results = {content: inpaint(sd, image, mask, "a cat", strength=0.6, steps=3, seed=4, masked_content=content,
                                progress=False, output="pt") for content in ("original", "noise", "fill")}
    assert not torch.equal(results["original"], results["noise"])
    assert not torch.equal(results["original"], results["fill"])


def test_only_masked_inpaints_the_crop_at_the_model_size_and_pastes_it_back(sd):
    import torch.nn.functional as F

    from latentlib import codec

    # a wide image: the square crop the model needs reaches past the top and bottom edges
    wide = PIL.Image.fromarray(np.tile(np.linspace(0, 255, 192, dtype=np.uint8)[None, :, None], (64, 1, 3)))
    mask = masks.box((64, 192), 120, 20, 136, 36)
    out = inpaint(sd, wide, mask, "a green star", steps=3, seed=0, only_masked=True, padding=8, paste_back=False,
                  output="pt", progress=False)
    assert out.shape == (1, 3, 64, 192)
    # by hand: the 32x32 box (16 + 2 x 8) centred on the mask, scaled to 64, inpainted, scaled back
    crop = codec.to_pixels(wide)[..., 12:44, 112:144]
    up = F.interpolate(crop, size=(64, 64), mode="bilinear", antialias=True).clamp(0, 1)
    up_mask = F.interpolate(mask[None, None, 12:44, 112:144], size=(64, 64), mode="bilinear", antialias=True)[0, 0]
    done = inpaint(sd, up, up_mask.clamp(0, 1), "a green star", steps=3, seed=0, paste_back=False, output="pt",
                   progress=False)
    back = F.interpolate(done, size=(32, 32), mode="bilinear", antialias=True).clamp(0, 1)
    assert (out[..., 12:44, 112:144] - back).abs().max() < 1e-5
    before = codec.to_pixels(wide)
    assert (out[..., :, :100] - before[..., :, :100]).abs().max() == 0  # outside the box: the image itself
    assert (out[..., 20:36, 120:136] - before[..., 20:36, 120:136]).abs().mean() > 0.02  # inside: repainted


def test_only_masked_keeps_the_whole_feather_inside_the_crop(sd):
    image = PIL.Image.fromarray(np.full((128, 128, 3), 120, np.uint8))
    mask = masks.box((128, 128), 56, 56, 72, 72)
    out = inpaint(sd, image, mask, "x", steps=3, seed=0, feather=10, only_masked=True, padding=0, progress=False)[0]
    soft = masks.feather(mask, 10).numpy()
    changed = np.abs(np.asarray(out, int) - 120).sum(-1) > 0
    assert not changed[soft == 0].any()  # nothing outside the feather
    assert changed[(soft > 0.2) & (soft < 1)].mean() > 0.5  # the soft edge was inpainted, not cut at the crop


def test_bad_input_is_refused_with_the_reason(sd, images):
    image = as_pil(images[0])
    with pytest.raises(ValueError, match=r"`mask` is 32x32 \(width x height\); the image is 64x64"):
        inpaint(sd, image, np.ones((32, 32), np.float32), "x", progress=False)
    with pytest.raises(ValueError, match="`mask` is all black: nothing to repaint"):
        inpaint(sd, image, np.zeros((64, 64), np.float32), "x", progress=False)
    with pytest.raises(ValueError, match="`mask` is all white"):
        inpaint(sd, image, np.ones((64, 64), np.float32), "x", progress=False)
    mask = masks.box((64, 64), 16, 16, 32, 32)
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"`strength` must be in \(0, 1\]"):
            inpaint(sd, image, mask, "x", strength=bad, progress=False)
    with pytest.raises(ValueError, match="`masked_content` must be one of original, noise, fill; got 'blur'"):
        inpaint(sd, image, mask, "x", masked_content="blur", progress=False)
    with pytest.raises(ValueError, match=r"mode=.unet. needs an inpainting UNet \(9 input channels"):
        inpaint(sd, image, mask, "x", mode="unet", progress=False)
    with pytest.raises(ValueError, match="divisible by 8"):
        inpaint(sd, PIL.Image.new("RGB", (60, 64)), np.ones((64, 60), np.float32), "x", progress=False)
    with pytest.raises(TypeError, match="must be a PIL image, a numpy array or a torch tensor; got str"):
        inpaint(sd, image, "mask.png", "x", progress=False)
    with pytest.raises(ValueError, match="eroding by 20 px leaves nothing to repaint"):
        inpaint(sd, image, mask, "x", erode=20, progress=False)
    with pytest.raises(ValueError, match=r"`mask` grown by 50 px is all white"):
        inpaint(sd, image, mask, "x", grow=50, progress=False)
    with pytest.raises(ValueError, match=r"`grow` must be a number of pixels >= 0, got -1"):
        inpaint(sd, image, mask, "x", grow=-1, progress=False)
    with pytest.raises(TypeError, match=r"`feather` must be a number of pixels, got str '3'"):
        inpaint(sd, image, mask, "x", feather="3", progress=False)
    with pytest.raises(ValueError, match=r"`strength` 0.04 with `steps` 20 runs no denoising step"):
        inpaint(sd, image, mask, "x", strength=0.04, steps=20, progress=False)
    with pytest.raises(TypeError, match="`callback` must be callable, got int"):
        inpaint(sd, image, mask, "x", callback=3, progress=False)


@pytest.fixture(scope="module")
def sd9():
    """A tiny model whose UNet is an inpainting UNet (9 input channels), and diffusers' pipeline on it."""
    from diffusers import StableDiffusionInpaintPipeline

    import latentlib as ll
    from latentlib.testing import tiny_sd_components

    parts = tiny_sd_components(seed=3, in_channels=9)
    model = ll.Model(**parts)
    pipe = StableDiffusionInpaintPipeline(**parts, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return model, pipe


@pytest.mark.parametrize("strength", [0.75, 1.0])
@pytest.mark.parametrize("guidance", [1.0, 5.0])
def test_unet_mode_matches_diffusers_inpaint_pipeline(sd9, images, strength, guidance):
    model, pipe = sd9
    image = as_pil(images[1])
    mask = masks.box((64, 64), 8, 16, 40, 56)
    ours = inpaint(model, image, mask, "a green star", strength=strength, steps=4, guidance=guidance, seed=5,
                   paste_back=False, output="pt", progress=False)
    mask_image = PIL.Image.fromarray((mask.numpy() * 255).astype(np.uint8))
    ref = pipe("a green star", image=image, mask_image=mask_image, strength=strength, num_inference_steps=4,
               guidance_scale=guidance, generator=torch.Generator().manual_seed(5), output_type="pt").images
    assert (ours - ref).abs().max().item() <= TOL
    auto = inpaint(model, image, mask, "a green star", strength=strength, steps=4, guidance=guidance, seed=5,
                   paste_back=False, output="pt", progress=False, mode="auto")
    assert torch.equal(auto, ours)


def test_modes_refuse_the_wrong_unet(sd, sd9, images):
    image = as_pil(images[0])
    mask = masks.box((64, 64), 16, 16, 32, 32)
    with pytest.raises(ValueError, match="this model's UNet is an inpainting UNet"):
        inpaint(sd9[0], image, mask, "x", mode="blend", progress=False)
    with pytest.raises(ValueError, match=r"`masked_content` 'fill' applies to mode='blend' only"):
        inpaint(sd9[0], image, mask, "x", masked_content="fill", progress=False)
    with pytest.raises(ValueError, match="this model's UNet takes 9 input channels"):
        sd9[0].generate("x", steps=2, progress=False)  # text-to-image needs a 4-channel UNet


@pytest.mark.parametrize("mode", ["blend", "unet"])
@pytest.mark.parametrize("strength", [0.75, 1.0])
def test_stochastic_sampler_continues_the_streams_as_diffusers_does(sd, sd9, images, mode, strength):
    """An ancestral sampler draws its step noise from the generator that sampled the VAE posterior and the start
    noise, in diffusers' pipeline; inpaint continues those same streams instead of starting fresh ones."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInpaintPipeline

    if mode == "blend":
        model = sd
        parts = {k: getattr(sd, k) for k in ("vae", "unet", "text_encoder", "tokenizer")}
    else:
        model, pipe9 = sd9
        parts = {k: getattr(pipe9, k) for k in ("vae", "unet", "text_encoder", "tokenizer")}
    scheduler = EulerAncestralDiscreteScheduler.from_config(model.scheduler.config)
    pipe = StableDiffusionInpaintPipeline(**parts, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    image = as_pil(images[0])
    mask = masks.box((64, 64), 16, 8, 48, 40)
    run = dict(strength=strength, steps=4, guidance=5.0, scheduler="euler-a", paste_back=False, output="pt",
               progress=False, mode=mode)
    ours = inpaint(model, image, mask, "a red circle", seed=11, **run)
    mask_image = PIL.Image.fromarray((mask.numpy() * 255).astype(np.uint8))
    ref = pipe("a red circle", image=image, mask_image=mask_image, strength=strength, num_inference_steps=4,
               guidance_scale=5.0, generator=torch.Generator().manual_seed(11), output_type="pt").images
    assert (ours - ref).abs().max().item() <= TOL
    # A seed list: each image is its own seed's run. (diffusers, given one image and a list of generators, samples
    # the image's posterior once, with the first generator, and repeats it: its items are not independent.)
    both = inpaint(model, image, mask, "a red circle", seed=[12, 11], **run)
    assert (both[1:] - ours).abs().max().item() <= 1e-5
    assert (both[:1] - inpaint(model, image, mask, "a red circle", seed=12, **run)).abs().max().item() <= 1e-5
