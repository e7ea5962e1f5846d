"""Inpainting on the core generation loop: latent blend for any 4-channel model, and paste-back.

``unet``: an inpainting UNet (9 input channels, e.g. stable-diffusion-inpainting) is given the mask and the masked
image's latents beside the latents at every step (``generate(concat=...)``), as diffusers does.

``blend`` (the mode every Stable Diffusion checkpoint and the default model can use): the image's latents
``z0`` are kept outside the mask. After every denoising step, the known region is set to ``z0`` re-noised
to the next timestep, with the soft latent mask (:func:`latentlib.masks.to_latent`):
``x <- m * x + (1 - m) * add_noise(z0, noise, t_next)``, and to ``z0`` itself after the last step. The latent
mask ``m`` takes each cell's largest mask value (``to_latent(..., reduce="max")``), so no cell that the mask
touches keeps its old content. This is
what diffusers' ``StableDiffusionInpaintPipeline`` does with a 4-channel UNet (tests check it against that
pipeline on masks on the latent grid), done through :func:`latentlib.sampling.generate`'s per-step ``callback``, not a copy of the loop.

Then **paste-back** composites the decoded result over the original with the feathered pixel mask, so
every pixel outside ``grow(mask, feather)`` is the original's exactly.

Order of the mask controls: ``grow`` then ``erode`` (pixels), then ``feather`` (the soft edge, used by
paste-back and, each latent cell taking its largest value, by the latent blend).

The latent blend equals diffusers' pipeline exactly when the mask lies on the latent grid (8-pixel cells):
diffusers binarises the mask and resizes it by nearest neighbour, latentlib keeps it soft and takes each
cell's largest value.
"""

from __future__ import annotations

import numbers

import numpy as np
import PIL.Image
import torch

from . import masks as mask_ops
from .sampling import _draw, _generators, _seed_list

__all__ = ["CONTENTS", "MODES", "inpaint", "prepare_mask"]

CONTENTS = ("original", "noise", "fill")
MODES = ("auto", "blend", "unet")


def prepare_mask(mask, size: tuple[int, int], *, grow: float = 0, erode: float = 0, feather: float = 0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask after ``grow`` and ``erode`` (hard edge kept as given) and after ``feather`` (soft), both
    ``(H, W)`` in [0, 1]. Refuses a mask that repaints nothing or everything."""
    m = mask_ops.to_mask(mask, size=size)
    if not bool((m > 0).any()):
        raise ValueError("`mask` is all black: nothing to repaint. White (1) marks what to repaint.")
    shaped = mask_ops.erode(mask_ops.grow(m, grow, name="grow"), erode, name="erode")
    if bool((shaped >= 1).all()):
        raise ValueError(f"`mask` {'is' if bool((m >= 1).all()) else f'grown by {grow:g} px is'} all white: "
                         f"everything would be repainted, which is text-to-image (model.generate) or image-to-image "
                         f"(generate(image=..., strength=...)), not inpainting.")
    return shaped, mask_ops.feather(shaped, feather, name="feather")


def _check_strength(strength) -> float:
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or not 0 < strength <= 1:
        raise ValueError(f"`strength` must be in (0, 1] (the share of the schedule that repaints), got {strength!r}.")
    return float(strength)


def _fill(pixels: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """``pixels`` (1, 3, H, W) with the masked area set to the mean colour of a 4-pixel ring around it."""
    inside = hard > 0
    ring = (mask_ops.grow(hard, 4) > 0) & ~inside
    if not bool(ring.any()):  # the mask covers (nearly) everything: fall back on the unmasked mean
        ring = ~inside
    colour = pixels[0][:, ring].mean(1) if bool(ring.any()) else torch.full((3,), 0.5)
    out = pixels.clone()
    out[0][:, inside] = colour[:, None]
    return out


def inpaint(model, image, mask, prompt="", *, negative_prompt=None, strength: float = 1.0, steps: int = 20,
            guidance: float = 5.0, seed: int | list[int] = 0, scheduler=None, grow: float = 0, erode: float = 0,
            feather: float = 0, masked_content: str = "original", only_masked: bool = False, padding: int = 32,
            paste_back: bool = True, mode: str = "auto", output: str = "pil", callback=None, interrupt=None,
            progress: bool = True):
    """Repaint the white part of ``mask`` in ``image`` following ``prompt``.

    Args:
        image: one RGB image (PIL, uint8 array (H, W, 3), or float tensor (1, 3, H, W) in [0, 1]); its sides
            must be divisible by the VAE's factor.
        mask: same size as ``image``; white (1) = repaint (see :func:`latentlib.masks.to_mask` for the kinds).
        strength: share of the schedule that repaints, in (0, 1]; 1 starts the masked area from pure noise.
        grow, erode, feather: pixels; the mask is grown, then eroded, then feathered (soft edge).
        masked_content: what the masked latents start from when ``strength < 1``: "original" (the image),
            "noise" (random latents: nothing of the original survives) or "fill" (the image with the hole
            filled by the colour around it).
        only_masked: crop the mask's box plus ``padding`` pixels (widened to the model's aspect ratio),
            inpaint it at the model's size, scale it back and paste it in.
        paste_back: composite over the original with the feathered mask (pixels outside it stay exactly
            as they were). False returns the decoded image as it is.
        mode: "blend" (latent blend, any 4-channel model), "unet" (a 9-channel inpainting UNet, as
            diffusers' inpainting checkpoints have: the mask, binarised at 0.5 after grow and erode, and the
            masked image go in beside the latents) or "auto" (whichever the model's UNet is).
        seed: one seed, or a list (one output per seed).
        callback, interrupt, progress, steps, guidance, scheduler, negative_prompt: as in ``generate``.

    Returns:
        A list of PIL images (``output="pil"``) or a float tensor (B, 3, H, W) in [0, 1] (``output="pt"``).

    Raises:
        latentlib.Interrupted: when ``interrupt`` was set (as ``generate``; nothing is decoded or pasted).
    """
    from . import codec

    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {', '.join(MODES)}; got {mode!r}.")
    nine = model.unet.config.in_channels == model.latent_channels * 2 + 1
    if mode == "auto":
        mode = "unet" if nine else "blend"
    if mode == "unet" and not nine:
        raise ValueError(f"mode='unet' needs an inpainting UNet ({model.latent_channels * 2 + 1} input channels: "
                         f"latents, mask, masked image); this one takes {model.unet.config.in_channels}. Use "
                         f"mode='blend' (or 'auto').")
    if mode == "blend" and nine:
        raise ValueError("this model's UNet is an inpainting UNet, which needs the mask and masked image as inputs; "
                         "use mode='unet' (or 'auto').")
    if masked_content not in CONTENTS:
        raise ValueError(f"`masked_content` must be one of {', '.join(CONTENTS)}; got {masked_content!r}.")
    if mode == "unet" and masked_content != "original":
        raise ValueError(f"`masked_content` {masked_content!r} applies to mode='blend' only: an inpainting UNet sees the "
                         f"masked image itself. Leave it at 'original'.")
    if output not in ("pil", "pt"):
        raise ValueError(f"`output` must be 'pil' or 'pt', got {output!r}.")
    strength = _check_strength(strength)
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"`steps` must be an integer >= 1, got {steps!r}.")
    if int(steps * strength) < 1:
        raise ValueError(f"`strength` {strength:g} with `steps` {steps} runs no denoising step (int(steps * strength) "
                         f"is 0); raise the strength to at least {1 / steps:g} or take more steps.")
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable, got {type(callback).__name__}.")
    pixels = codec.to_pixels(image, multiple=model.vae_scale_factor, name="image")  # (B, 3, H, W) in [0, 1]
    if pixels.shape[0] != 1:
        raise ValueError(f"`image` must be one image; got a batch of {pixels.shape[0]} (give a list of seeds for "
                         f"several results).")
    size = (pixels.shape[-2], pixels.shape[-1])
    hard, soft = prepare_mask(mask, size, grow=grow, erode=erode, feather=feather)
    if isinstance(padding, bool) or not isinstance(padding, numbers.Integral) or padding < 0:
        raise ValueError(f"`padding` must be an integer number of pixels >= 0, got {padding!r}.")
    seeds = _seed_list(seed, None if not isinstance(seed, numbers.Integral) else 1)
    run = {"prompt": prompt, "negative_prompt": negative_prompt, "strength": strength, "steps": steps,
           "guidance": guidance, "seeds": seeds, "scheduler": scheduler, "masked_content": masked_content,
           "callback": callback, "interrupt": interrupt, "progress": progress}
    method = _blend if mode == "blend" else _unet
    if only_masked:
        result = _only_masked(model, pixels, hard, soft, padding, run, method)
    else:
        result = method(model, pixels, hard, soft, **run)  # (B, 3, H, W) in [0, 1]
    if paste_back:
        w = soft.to(result)[None, None]
        result = w * result + (1 - w) * pixels.to(result)
    result = result.clamp(0, 1)
    if output == "pt":
        return result
    return [PIL.Image.fromarray((r.permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)) for r in result]


def _blend(model, pixels, hard, soft, *, prompt, negative_prompt, strength, steps, guidance, seeds, scheduler,
           masked_content, callback, interrupt, progress) -> torch.Tensor:
    """Latent-blend inpainting at the image's own size; returns the decoded images (B, 3, H, W) in [0, 1]."""
    from . import codec

    device, dtype = model.device, model.dtype
    batch = len(seeds)
    generators = _generators(seeds)
    repeated = pixels.repeat(batch, 1, 1, 1).to(device)
    # As diffusers does: image i's posterior is sampled with generator i, which then draws its noise.
    z0 = codec.encode_pixels(model.vae, repeated, sample=True, generator=generators, out_dtype=dtype)
    latent_shape = tuple(z0.shape[1:])
    noise = _draw(generators, latent_shape).to(device, dtype)
    # diffusers next samples the masked image's posterior with the same generators, which a 4-channel UNet never
    # reads; the draw is taken and dropped, so a stochastic sampler's step noise continues from where diffusers' does
    _draw(generators, latent_shape)
    # every latent cell the mask touches is repainted (a cell that kept part of an object's latents would
    # paint part of it back); paste-back then restores every pixel outside the mask
    m = mask_ops.to_latent(soft, model.vae_scale_factor, reduce="max").to(device, dtype)[None, None]  # (1, 1, h, w)
    start = z0
    if masked_content == "noise":
        # a stream of its own per seed (seed + 1's would be the next item's stream in a seed list)
        other = _draw(_generators([(s * 1_000_003 + 0x5EED) % 2**63 for s in seeds]), latent_shape).to(device, dtype)
        start = (1 - m) * z0 + m * other
    elif masked_content == "fill":
        filled = _fill(pixels.float(), hard).repeat(batch, 1, 1, 1).to(device)
        start = (1 - m) * z0 + m * codec.encode_pixels(model.vae, filled, sample=False, out_dtype=dtype)

    def blend(step):
        known = z0
        if step.index + 1 < len(step.timesteps):
            t_next = step.timesteps[step.index + 1]
            known = step.scheduler.add_noise(z0, noise, t_next.reshape(1).repeat(batch))
        blended = (1 - m) * known + m * step.latents
        if callback is not None:
            step.latents = blended
            replaced = callback(step)
            if replaced is not None:
                return replaced
        return blended

    # the generators go on into the loop, so a stochastic sampler draws what diffusers' would (one stream per image)
    common = {"seed": seeds, "generators": generators, "steps": steps, "guidance": guidance, "scheduler": scheduler,
              "callback": blend, "interrupt": interrupt, "progress": progress, "output": "pt"}
    if strength >= 1.0:  # pure noise, as diffusers does at full strength
        return model.generate(prompt, negative_prompt, latents=noise, **common)
    return model.generate(prompt, negative_prompt, image=start, strength=strength, latents=noise, **common)


def _unet(model, pixels, hard, soft, *, prompt, negative_prompt, strength, steps, guidance, seeds, scheduler,
          masked_content, callback, interrupt, progress) -> torch.Tensor:
    """An inpainting UNet (diffusers' 9-channel layout): the mask and the masked image's latents go in beside the
    latents at every step (``generate(concat=...)``); nothing is blended. ``masked_content`` does not apply:
    the UNet sees the masked image itself."""
    from . import codec

    device, dtype = model.device, model.dtype
    batch = len(seeds)
    generators = _generators(seeds)
    repeated = pixels.repeat(batch, 1, 1, 1).to(device)
    # diffusers' order of draws: the image's posterior (below full strength), the noise, the masked image's
    z0 = None
    if strength < 1.0:
        z0 = codec.encode_pixels(model.vae, repeated, sample=True, generator=generators, out_dtype=dtype)
    h, w = pixels.shape[-2] // model.vae_scale_factor, pixels.shape[-1] // model.vae_scale_factor
    noise = _draw(generators, (model.latent_channels, h, w)).to(device, dtype)
    binary = (hard >= 0.5).to(repeated)[None, None]  # the UNet was trained on hard masks: binarised here, for it
    masked_image = repeated * (1 - binary) + 0.5 * binary  # grey (0 in [-1, 1]) where it repaints
    masked = codec.encode_pixels(model.vae, masked_image, sample=True, generator=generators, out_dtype=dtype)
    mask_latent = torch.nn.functional.interpolate(binary, size=(h, w)).to(device, dtype).repeat(batch, 1, 1, 1)
    common = {"seed": seeds, "generators": generators, "steps": steps, "guidance": guidance, "scheduler": scheduler,
              "callback": callback, "interrupt": interrupt, "progress": progress, "output": "pt",
              "concat": torch.cat([mask_latent, masked], dim=1)}
    if z0 is None:
        return model.generate(prompt, negative_prompt, latents=noise, **common)
    return model.generate(prompt, negative_prompt, image=z0, strength=strength, latents=noise, **common)


def _crop_box(region: torch.Tensor, padding: int, aspect: float) -> tuple[int, int, int, int]:
    """The box around ``region`` (the feathered mask's support) plus ``padding``, widened to width/height =
    ``aspect``. It may reach past the image: :func:`_only_masked` pads the image to fit it."""
    ys, xs = torch.nonzero(region > 0, as_tuple=True)
    left, right = int(xs.min()) - padding, int(xs.max()) + 1 + padding
    top, bottom = int(ys.min()) - padding, int(ys.max()) + 1 + padding
    bw, bh = right - left, bottom - top
    if bw / bh < aspect:
        grow_w = int(np.ceil(bh * aspect)) - bw
        left, right = left - grow_w // 2, right + grow_w - grow_w // 2
    else:
        grow_h = int(np.ceil(bw / aspect)) - bh
        top, bottom = top - grow_h // 2, bottom + grow_h - grow_h // 2
    return left, top, right, bottom


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) to ``size``, bilinear with antialiasing (down) / bilinear (up)."""
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _only_masked(model, pixels, hard, soft, padding, run, method) -> torch.Tensor:
    """Inpaint the feathered mask's box plus ``padding`` at the model's size, scale it back, and place it in the
    full image. A box that reaches past the image (to keep the model's aspect ratio) is filled by repeating
    the border pixels, and only the part inside the image is kept."""
    mh, mw = model.default_size
    h, w = hard.shape
    left, top, right, bottom = _crop_box(soft, padding, mw / mh)
    pad = (max(0, -left), max(0, right - w), max(0, -top), max(0, bottom - h))  # left, right, top, bottom
    padded = torch.nn.functional.pad(pixels.float(), pad, mode="replicate")
    hard_p = torch.nn.functional.pad(hard[None, None], pad)[0, 0]
    soft_p = torch.nn.functional.pad(soft[None, None], pad)[0, 0]
    l, t = left + pad[0], top + pad[2]
    crop = padded[..., t:t + bottom - top, l:l + right - left]
    up = _resize(crop, (mh, mw)).clamp(0, 1)
    up_hard = _resize(hard_p[t:t + bottom - top, l:l + right - left][None, None], (mh, mw))[0, 0].clamp(0, 1)
    up_soft = _resize(soft_p[t:t + bottom - top, l:l + right - left][None, None], (mh, mw))[0, 0].clamp(0, 1)
    done = method(model, up, up_hard, up_soft, **run)
    back = _resize(done.float(), (bottom - top, right - left)).clamp(0, 1)
    out = padded.repeat(done.shape[0], 1, 1, 1).clone()
    out[..., t:t + bottom - top, l:l + right - left] = back
    return out[..., pad[2]:pad[2] + h, pad[0]:pad[0] + w]
