"""Seeds to noise, and the generation loop.

The loop is ours on purpose: it is the same arithmetic as diffusers'
``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline`` (tests check it to
1e-4), written out in numbered steps with a per-step ``callback`` that can read
and replace the latents and an ``interrupt`` flag, so that live previews, Stop
buttons, latent edits and inpainting hang on hooks instead of on copies of it.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import numbers
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg
from tqdm.auto import tqdm

from ._checks import check_choice, check_finite, check_int, check_number
from .edits import apply_vector_edits, check_edits, h_space_edits
from .codec import decode_to_output, encode_pixels, to_pixels
from .prompts import PromptEmbedding, encode_prompts
from .schedulers import EARLY_INDEX, make_scheduler

__all__ = ["Interrupted", "Step", "noise", "generate", "guidance_embedding", "sweep"]

OUTPUTS = ("pil", "pt", "np", "latent")
DECODERS = ("full", "preview")


class Interrupted(Exception):
    """Raised by ``generate`` when its ``interrupt`` event was set: the loop stopped before step ``step`` of
    ``total`` and nothing was decoded (an abandoned frame costs no decode). ``latents`` holds the latents as
    they were then. A callback's ``step.stop()`` is different: it ends early and returns the images."""

    def __init__(self, step: int, total: int, latents: torch.Tensor):
        super().__init__(f"generation interrupted after {step} of {total} steps (nothing decoded)")
        self.step, self.total, self.latents = step, total, latents

    def __reduce__(self):  # pickles (e.g. across processes) with its fields
        return type(self), (self.step, self.total, self.latents)


@dataclass
class Step:
    """What a ``callback`` sees after each denoising step.

    Attributes:
        index: 0-based step number.
        total: number of steps this run will take.
        timestep: the scheduler timestep just processed.
        latents: ``(B, C, h, w)`` latents after the step.
        noise_pred: ``(B, C, h, w)`` the (guided) model prediction used for the step.
        timesteps: every timestep this run takes (``timesteps[index]`` is ``timestep``).
        scheduler: the run's scheduler (after this step), e.g. for ``scheduler.add_noise`` to the next timestep,
            as latent-blend inpainting does.
    """

    index: int
    total: int
    timestep: torch.Tensor
    latents: torch.Tensor
    noise_pred: torch.Tensor
    timesteps: torch.Tensor | None = field(default=None, repr=False)
    scheduler: object = field(default=None, repr=False)
    _stop: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Ask the loop to stop after this step (the current latents are decoded and returned)."""
        self._stop = True


_MAX_SEED = 2**63 - 1


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _seed_list(seed, n) -> list[int]:
    """Seeds for ``n`` items: ``seed + i`` for an int seed, or the listed seeds."""
    if _is_int(seed):
        n = 1 if n is None else check_int("n", n, minimum=1)
        if not 0 <= seed <= _MAX_SEED - n:
            raise ValueError(f"`seed` must be in [0, 2**63 - 1 - n], got {seed}.")
        return [int(seed) + i for i in range(n)]
    if isinstance(seed, Sequence) and not isinstance(seed, str) and len(seed) > 0 and all(map(_is_int, seed)):
        if n is not None and n != len(seed):
            raise ValueError(f"`n` is {n} but `seed` lists {len(seed)} seeds; pass one or make them agree.")
        if not all(0 <= s <= _MAX_SEED for s in seed):
            raise ValueError(f"`seed` values must be in [0, 2**63 - 1], got {list(seed)}.")
        return [int(s) for s in seed]
    raise TypeError(f"`seed` must be an int or a non-empty list of ints, got {seed!r}.")


def _generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(s) for s in seeds]


def _draw(generators: list[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    # One CPU generator per item, float32: item i depends only on seed i, on every device.
    return torch.cat([torch.randn((1, *shape), generator=g, dtype=torch.float32) for g in generators])


def noise(model, seed: int | Sequence[int] = 0, n: int | None = None, height: int | None = None,
          width: int | None = None) -> torch.Tensor:
    """Initial latents ``(n, C, height/f, width/f)``: item i is standard normal noise from seed ``seed + i``.

    Drawn on the CPU in float32 with one generator per item (so item i is the same alone or in a
    batch, and the same on every device), then moved to the model's device and dtype.
    """
    seeds = _seed_list(seed, n)
    height, width = model._check_size(height, width)
    shape = (model.latent_channels, height // model.vae_scale_factor, width // model.vae_scale_factor)
    return _draw(_generators(seeds), shape).to(model.device, model.dtype)


def guidance_embedding(w: torch.Tensor, dim: int, dtype=torch.float32) -> torch.Tensor:
    """Sinusoidal embedding of guidance scales ``w`` (B,) -> (B, dim), for guidance-distilled (LCM) UNets."""
    w = w * 1000.0
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=dtype) * -(torch.log(torch.tensor(10000.0)) / (half - 1)))
    emb = w.to(dtype)[:, None] * freq[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    if dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


def _as_embedding(model, value, name: str) -> PromptEmbedding:
    if isinstance(value, PromptEmbedding):
        if value.embeds.shape[1:] != model.embedding_shape:
            raise ValueError(
                f"`{name}` has token embeddings of shape {tuple(value.embeds.shape)}; this model needs "
                f"(B, {', '.join(map(str, model.embedding_shape))}). Was it made by another model?"
            )
        if model.is_sdxl and value.pooled is None:
            raise ValueError(f"`{name}` has no pooled embedding, which this SDXL model needs.")
        return value.to(model.device, model.dtype)
    if isinstance(value, str) or (isinstance(value, Sequence) and value and all(isinstance(p, str) for p in value)):
        fast = getattr(model, "fast", None)
        if fast is not None and fast.cache:
            key = (value,) if isinstance(value, str) else tuple(value)
            return fast.cached_prompt(model, key, lambda: encode_prompts(model, value))
        return encode_prompts(model, value)
    raise TypeError(f"`{name}` must be a string, a list of strings or a PromptEmbedding; got {type(value).__name__}.")


def _match_batch(emb: PromptEmbedding, batch: int, name: str, other: str) -> PromptEmbedding:
    if len(emb) == batch:
        return emb
    if len(emb) == 1:
        return emb.repeat(batch)
    raise ValueError(
        f"`{name}` has a batch of {len(emb)} but {other} has {batch}; pass one prompt for all, or one per image."
    )


def _check_generators(generators, batch: int) -> list[torch.Generator]:
    """``generate(generators=...)``: one CPU ``torch.Generator`` per item, continued as they are."""
    if isinstance(generators, torch.Generator) or not isinstance(generators, Sequence):
        raise TypeError(f"`generators` must be a list of torch.Generator (one per image), got {type(generators).__name__}.")
    if len(generators) != batch:
        raise ValueError(f"`generators` lists {len(generators)} generators; the batch has {batch} images.")
    for i, g in enumerate(generators):
        if not isinstance(g, torch.Generator) or g.device.type != "cpu":
            raise TypeError(f"`generators[{i}]` must be a CPU torch.Generator (noise is drawn on the CPU), got {g!r}.")
    return list(generators)


@functools.lru_cache(maxsize=64)
def _step_parameters(cls) -> frozenset:
    return frozenset(inspect.signature(cls.step).parameters)


def _step_kwargs(scheduler, generators, eta: float) -> dict:
    params = _step_parameters(type(scheduler))
    kwargs = {}
    if "eta" in params:
        kwargs["eta"] = eta
    if "generator" in params:
        kwargs["generator"] = generators if len(generators) > 1 else generators[0]
    return kwargs


@torch.no_grad()
def generate(
    model,
    prompt: str | Sequence[str] | PromptEmbedding = "",
    negative_prompt: str | Sequence[str] | PromptEmbedding | None = None,
    *,
    latents: torch.Tensor | None = None,
    seed: int | Sequence[int] = 0,
    generators: Sequence[torch.Generator] | None = None,
    n: int | None = None,
    height: int | None = None,
    width: int | None = None,
    steps: int = 20,
    guidance: float = 5.0,
    guidance_rescale: float = 0.0,
    scheduler=None,
    eta: float = 0.0,
    image=None,
    strength: float | None = None,
    edits: Sequence = (),
    callback: Callable[[Step], torch.Tensor | None] | None = None,
    interrupt: threading.Event | None = None,
    output: str = "pil",
    return_latents: bool = False,
    decode_batch_size: int = 8,
    decoder: str = "full",
    progress: bool = True,
    concat: torch.Tensor | None = None,
):
    """Text-to-image, or image-to-image when ``image`` is given. See ``Model.generate`` for the arguments.

    ``concat`` ``(B or 1, k, h, w)``: extra UNet input channels put after the (scaled) latents at every step,
    as an inpainting UNet takes the mask and the masked image's latents (``in_channels`` = latent channels
    + k); :mod:`latentlib.inpaint` uses it."""
    # 1. Check inputs
    steps = check_int("steps", steps, minimum=1)
    guidance = check_number("guidance", guidance, low=0.0)
    guidance_rescale = check_number("guidance_rescale", guidance_rescale, low=0.0, high=1.0)
    eta = check_number("eta", eta, low=0.0)
    check_choice("output", output, OUTPUTS)
    check_choice("decoder", decoder, DECODERS)
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable, got {type(callback).__name__}.")
    if interrupt is not None and not hasattr(interrupt, "is_set"):
        raise TypeError(f"`interrupt` must be a threading.Event (anything with is_set()), got {type(interrupt).__name__}.")
    if image is None and strength is not None:
        raise ValueError(f"`strength` ({strength!r}) only applies with an `image` (image-to-image).")
    if image is not None:
        strength = check_number("strength", 0.8 if strength is None else strength, low=0.0, high=1.0)
    extra = 0
    if concat is not None:
        if not isinstance(concat, torch.Tensor) or concat.ndim != 4:
            raise TypeError(f"`concat` must be a (B, k, h, w) tensor, got {type(concat).__name__}.")
        extra = concat.shape[1]
        if model.unet.config.in_channels != model.latent_channels + extra:
            raise ValueError(f"`concat` has {extra} channels; this UNet takes {model.unet.config.in_channels} inputs, "
                             f"so it needs {model.unet.config.in_channels - model.latent_channels} beside the latents.")
    elif model.unet.config.in_channels != model.latent_channels:
        raise ValueError(
            f"this model's UNet takes {model.unet.config.in_channels} input channels (an inpainting UNet); "
            f"text-to-image and image-to-image need one that takes {model.latent_channels}."
        )
    checked = check_edits(edits)
    if image is None and any(space == "z0" for _, space, _, _ in checked):
        raise ValueError("`edits` include a z0 edit, which moves the start image's latents; pass an `image`.")
    sched = make_scheduler(scheduler, model.scheduler)
    device, dtype = model.device, model.dtype

    # 2. The start image (image-to-image) fixes the size; then the seeds and the batch: from explicit
    #    latents, from a list of seeds, or one image per prompt / start image.
    start_image = None
    if image is not None:
        start_image = _start_image(model, image)  # ("latents", z) or ("pixels", p)
        size = (start_image[1].shape[-2], start_image[1].shape[-1])
        if start_image[0] == "latents":
            size = (size[0] * model.vae_scale_factor, size[1] * model.vae_scale_factor)
        for name, given, actual in (("height", height, size[0]), ("width", width, size[1])):
            if given is not None and given != actual:
                raise ValueError(f"`{name}` is {given} but `image` has {name} {actual}; leave it out or match it.")
        height, width = size
    if latents is not None:
        if not isinstance(latents, torch.Tensor):
            raise TypeError(f"`latents` must be a torch.Tensor (B, C, h, w), got {type(latents).__name__}.")
        height, width = model._check_latents("latents", latents, height, width)
        check_finite("latents", latents)
        batch = latents.shape[0]
        if n is not None and n != batch:
            raise ValueError(f"`n` is {n} but `latents` has a batch of {batch}; leave `n` out with latents.")
        if not _is_int(seed) and isinstance(seed, Sequence) and len(seed) != batch:
            raise ValueError(f"`seed` lists {len(seed)} seeds but `latents` has a batch of {batch}.")
        seeds = _seed_list(seed, batch)
    else:
        if n is None and _is_int(seed):
            # One image per prompt, or per start image; a single prompt/image serves them all.
            n = max(len(prompt) if isinstance(prompt, (PromptEmbedding, Sequence)) and not isinstance(prompt, str)
                    else 1, 1 if start_image is None else start_image[1].shape[0])
        seeds = _seed_list(seed, n)
        batch = len(seeds)
        height, width = model._check_size(height, width)
    fresh = generators is None
    generators = _generators(seeds) if fresh else _check_generators(generators, batch)
    fast = getattr(model, "fast", None)

    # 3. Encode the prompt(s)
    cond = _match_batch(_as_embedding(model, prompt, "prompt"), batch, "prompt", "the latents/seeds")
    if any(space == "prompt" for _, space, _, _ in checked):
        cond = PromptEmbedding(embeds=apply_vector_edits(checked, "prompt", cond.embeds), pooled=cond.pooled,
                               recipe=f"{cond.recipe} + edits")
    do_cfg = guidance > 1.0 and model.unet.config.time_cond_proj_dim is None
    uncond = None
    if do_cfg:
        if negative_prompt is None and model.is_sdxl and model.force_zeros_for_empty_prompt:
            uncond = PromptEmbedding(embeds=torch.zeros_like(cond.embeds), pooled=torch.zeros_like(cond.pooled))
        else:
            uncond = _as_embedding(model, "" if negative_prompt is None else negative_prompt, "negative_prompt")
            uncond = _match_batch(uncond, batch, "negative_prompt", "the latents/seeds")
    elif negative_prompt is not None:
        _as_embedding(model, negative_prompt, "negative_prompt")  # still validated, though unused without CFG
    text = cond.embeds if uncond is None else torch.cat([uncond.embeds, cond.embeds])

    # 4. Timesteps (image-to-image starts part-way, as diffusers' get_timesteps)
    sched.set_timesteps(steps, device=device)
    timesteps = sched.timesteps
    if start_image is not None:
        init = min(int(steps * strength), steps)
        begin = max(steps - init, 0) * sched.order
        timesteps = timesteps[begin:]
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(begin)

    # 5. Prepare latents. As in diffusers, a start image given as pixels is encoded by sampling the VAE
    #    posterior with image i's generator, which then draws its noise. xT edits move the noise, z0 edits
    #    the start image's latents.
    image_latents = None
    if start_image is not None:
        kind, value = start_image
        if kind == "pixels" and fresh and fast is not None and fast.cache and not _encoder_hooked(model, fast):
            value = _cached_start(model, fast, value, batch, seeds, generators, dtype)
        elif kind == "pixels":
            value = encode_pixels(model.vae, _match_image_batch(value, batch), sample=True, generator=generators,
                                  out_dtype=dtype)
        else:
            value = _match_image_batch(value, batch)
        image_latents = apply_vector_edits(checked, "z0", value.to(device, dtype))
    if latents is not None:
        start_noise = latents.to(device, dtype)
    else:
        shape = (model.latent_channels, height // model.vae_scale_factor, width // model.vae_scale_factor)
        if fresh and fast is not None and fast.cache and (start_image is None or start_image[0] == "latents"):
            # The cache keeps the generators' state after the draw too, so stochastic samplers that
            # draw from them next get exactly what they would get uncached. A start image given as
            # pixels has drawn from the generators already (its VAE posterior): no cache then.
            def draw():
                return _draw(generators, shape).to(device, dtype), [g.get_state() for g in generators]

            start_noise, states = fast.cached_noise((tuple(seeds), shape, str(device), dtype), draw)
            for g, state in zip(generators, states, strict=True):
                g.set_state(state)
        else:
            start_noise = _draw(generators, shape).to(device, dtype)
    start_noise = apply_vector_edits(checked, "xT", start_noise)
    if image_latents is None:
        x = start_noise * sched.init_noise_sigma
    elif len(timesteps) == 0:
        x = image_latents.clone()  # strength so low that no step runs: the image comes back as encoded
    else:
        x = sched.add_noise(image_latents, start_noise, timesteps[:1].repeat(batch))

    # 6. Extra conditioning: scheduler kwargs, guidance embedding (LCM), SDXL's pooled text and size ids
    step_kwargs = _step_kwargs(sched, generators, eta)
    timestep_cond = None
    if model.unet.config.time_cond_proj_dim is not None:
        w = torch.full((batch,), guidance - 1.0)
        timestep_cond = guidance_embedding(w, model.unet.config.time_cond_proj_dim).to(device, dtype)
    added = None
    if model.is_sdxl:
        pooled = cond.pooled if uncond is None else torch.cat([uncond.pooled, cond.pooled])
        time_ids = model._add_time_ids(height, width).to(device, dtype).repeat(pooled.shape[0], 1)
        added = {"text_embeds": pooled, "time_ids": time_ids}

    # 7. Denoising loop (h edits ride on a hook at the UNet's bottleneck, edits.bottleneck_hook). The fast path's UNet
    #    (compiled / CUDA graphs) cannot see hooks, so it serves only runs that need none.
    unet = model.unet
    if concat is not None:
        concat = _match_image_batch(concat.to(device, dtype), batch)
        if (concat.shape[-2], concat.shape[-1]) != (x.shape[-2], x.shape[-1]):
            raise ValueError(f"`concat` is {tuple(concat.shape[-2:])} (h, w); the latents are {tuple(x.shape[-2:])}.")
        concat = torch.cat([concat, concat]) if do_cfg else concat
    if fast is not None and fast._unet is not None and not any(space == "h" for _, space, _, _ in checked) \
            and not _has_hooks(model.unet, fast._modules) and concat is None:
        runner = fast._unet

        def unet(x_in, t, encoder_hidden_states, timestep_cond, added_cond_kwargs, return_dict):
            return (runner(x_in, t, encoder_hidden_states, timestep_cond, added_cond_kwargs),)

    total = len(timesteps)
    current = {"t": timesteps[0] if total else None}
    if total and isinstance(sched, EARLY_INDEX) and sched.step_index is None:
        # What the scheduler's first step does (find where the schedule starts), done now: its lookup reads
        # the timesteps back from the device, which here finds the GPU idle, while after the UNet's launch it
        # would make the host wait for the UNet instead of queueing the step and the decode behind it.
        sched._init_step_index(timesteps[0])
    bar = tqdm(total=total, desc="generate", leave=False, disable=not progress or total == 0)
    with h_space_edits(model.unet, checked, lambda: current["t"]):
        try:
            for i, t in enumerate(timesteps):
                if interrupt is not None and interrupt.is_set():
                    raise Interrupted(i, total, x)
                current["t"] = t
                x_in = torch.cat([x, x]) if do_cfg else x
                x_in = sched.scale_model_input(x_in, t)
                if concat is not None:
                    x_in = torch.cat([x_in, concat], dim=1)
                pred = unet(
                    x_in, t, encoder_hidden_states=text, timestep_cond=timestep_cond, added_cond_kwargs=added,
                    return_dict=False,
                )[0]
                if do_cfg:
                    pred_uncond, pred_text = pred.chunk(2)
                    pred = pred_uncond + guidance * (pred_text - pred_uncond)
                    if guidance_rescale > 0:
                        pred = rescale_noise_cfg(pred, pred_text, guidance_rescale=guidance_rescale)
                x = sched.step(pred, t, x, **step_kwargs, return_dict=False)[0]
                bar.update()
                if callback is not None:
                    state = Step(index=i, total=total, timestep=t, latents=x, noise_pred=pred, timesteps=timesteps,
                                 scheduler=sched)
                    replaced = callback(state)
                    if replaced is not None:
                        x = _replacement(model, replaced, x, height, width)
                    if state._stop:
                        break
        finally:
            bar.close()

    # 8. Decode
    if output == "latent":
        return (x, x) if return_latents else x
    images = decode_latents(model, x, output, decoder=decoder, batch_size=decode_batch_size)
    return (images, x) if return_latents else images


def decode_latents(model, latents: torch.Tensor, output: str, *, decoder: str = "full", batch_size: int = 8):
    """Decode ``latents`` as :func:`generate` does: with the preview decoder for ``decoder="preview"`` when the
    model has one (else the full VAE), through the fast path's compiled or graphed decoder when it can serve
    (no hooks on the decoder), ``batch_size`` latents per call."""
    vae = model.vae
    if decoder == "preview" and getattr(model, "preview_decoder", None) is not None:
        vae = model.preview_decoder
    fast = getattr(model, "fast", None)
    run = None if fast is None else fast._decode.get("preview" if vae is not model.vae else "full")
    if run is not None and _has_hooks(vae, fast._modules):  # the compiled or graphed decoder would not run them either
        run = None
    return decode_to_output(vae, latents, output, batch_size=batch_size, run=run)


def _has_hooks(module: torch.nn.Module, listed: dict) -> bool:
    """Whether ``module`` or a submodule has forward (pre-)hooks or a replaced ``forward``, or global module
    hooks are set: a compiled or graphed UNet or decoder would not run them.

    A replaced ``forward`` (an instance attribute that is not the module's own method) is how diffusers' hooks
    (layerwise casting, group offloading, caches) and accelerate's (CPU offload) attach; their Python must run
    on every call. Removing them puts the module's own bound method back as an instance attribute, which
    does not count.

    ``module.modules()`` walks SD 1.5's 709 UNet modules in about 0.6 ms of Python, which a live frame notices;
    checking a list of their attribute dicts made once takes about 0.05 ms. ``listed`` keeps those lists (the
    fast path's, so ``accelerate()`` and ``decelerate()`` drop them with it). What this misses: a module put
    into the network after its list was made; after changing the network's modules, ``model.accelerate()``
    again (as for any change of its weights: a compiled or graphed network keeps running the old ones).
    """
    from torch.nn.modules import module as nn_module

    if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
        return True
    attributes = listed.get(module)
    if attributes is None:  # each module's __dict__: reading it directly halves the check's time
        attributes = listed[module] = tuple(m.__dict__ for m in module.modules())
    return any(a["_forward_hooks"] or a["_forward_pre_hooks"] or ("forward" in a and _replaced(a["forward"]))
               for a in attributes)


def _replaced(forward) -> bool:
    """Whether an instance's ``forward`` attribute is something else than its own class's method, bound to it."""
    owner = getattr(forward, "__self__", None)
    return owner is None or getattr(forward, "__func__", None) is not type(owner).forward


def _cached_start(model, fast, pixels: torch.Tensor, batch: int, seeds: list[int], generators,
                  dtype) -> torch.Tensor:
    """A start image's latents, remembered by the fast path with the seeds' generators' state after the draw.

    A live image-to-image frame (a slider moving over a start image) encodes the same pixels with the same
    seeds every time; on a GPU the uncompiled VAE encoder costs more than the rest of a 1-step frame (SD 1.5 on
    an H200: 12.6 ms against 6.9). The key is the pixels' SHA-256 (before one image is repeated for the batch;
    about 2 ms for a 512x512 image here), their shape, the batch, the seeds, the VAE, the device and the dtype;
    the generators are put in the state the encoding left them in, so the noise drawn next is what it would
    be uncached.
    """
    digest = hashlib.sha256(memoryview(pixels.contiguous().numpy()).cast("B")).digest()

    def encode():
        latents = encode_pixels(model.vae, _match_image_batch(pixels, batch), sample=True, generator=generators,
                                out_dtype=dtype)
        return latents, [g.get_state() for g in generators]

    key = (digest, tuple(pixels.shape), batch, tuple(seeds), id(model.vae), str(model.device), dtype)
    latents, states = fast.cached_start(key, encode)
    for g, state in zip(generators, states, strict=True):
        g.set_state(state)
    return latents


def _encoder_hooked(model, fast) -> bool:
    """Whether the VAE's encoding has hooks to run (then the start-image cache is not used)."""
    parts = (getattr(model.vae, "encoder", None), getattr(model.vae, "quant_conv", None))
    return any(_has_hooks(part, fast._modules) for part in parts if part is not None)


def _replacement(model, replaced, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Latents returned by a callback, checked against the ones they replace."""
    model._check_latents("callback's returned latents", replaced, height, width)
    check_finite("callback's returned latents", replaced)
    if replaced.shape != x.shape:
        raise ValueError(f"the callback returned latents of shape {tuple(replaced.shape)}; expected {tuple(x.shape)}.")
    return replaced.to(x.device, x.dtype)


def _start_image(model, image) -> tuple[str, torch.Tensor]:
    """The image-to-image start: ``("latents", z)`` for a tensor (B, C_latent, h, w) with the VAE's latent
    channel count (diffusers' convention), else ``("pixels", p)`` with p float (B, 3, H, W) in [0, 1]."""
    if isinstance(image, torch.Tensor) and image.ndim == 4 and image.shape[1] == model.latent_channels \
            and image.shape[1] != 3:
        model._check_latents("image", image, None, None)
        check_finite("image", image)
        return "latents", image
    return "pixels", to_pixels(image, multiple=model.vae_scale_factor, name="image")


def _match_image_batch(z: torch.Tensor, batch: int) -> torch.Tensor:
    if z.shape[0] == batch:
        return z
    if z.shape[0] == 1:
        return z.expand(batch, *z.shape[1:]).contiguous()
    raise ValueError(f"`image` has a batch of {z.shape[0]} but the latents/seeds have {batch}.")


def sweep(model, prompt, direction, strengths, *, seed: int = 0, batch_size: int = 16, output: str = "pil",
          **kwargs):
    """Frames of one seed moved along ``direction`` by each of ``strengths``: a slider's worth of images.

    Directions in ``xT`` or ``prompt`` space are applied per frame inside one batched ``generate`` call
    per ``batch_size`` frames (on a GPU far faster than one call per frame; the frames equal those
    calls' up to float rounding). ``h`` and ``z0`` directions move every item of a batch alike, so they
    run one call per frame. ``kwargs`` go to :func:`generate` (steps, guidance, image, ...).

    Returns:
        the frames in ``output`` form: a list of PIL images, or a stacked array/tensor.
    """
    if not isinstance(strengths, Sequence) and not (isinstance(strengths, torch.Tensor) and strengths.ndim == 1):
        raise TypeError(f"`strengths` must be a list of numbers or a 1-D tensor, got {type(strengths).__name__}.")
    strengths = [float(v) for v in strengths]
    if not strengths:
        raise ValueError("`strengths` is empty; give at least one strength.")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    check_choice("output", output, OUTPUTS)
    for name in ("latents", "n", "edits"):
        if name in kwargs:
            raise ValueError(f"`{name}` cannot be given to sweep: the sweep makes one seed's frames along `direction`.")
    space = check_edits([(direction, 0.0)])[0][1]
    if not _is_int(seed):
        raise TypeError(f"`seed` must be one int (every frame starts from it), got {seed!r}.")
    parts = []
    if space == "xT":
        base = noise(model, seed, height=kwargs.get("height"), width=kwargs.get("width"))
    elif space == "prompt":
        emb = _as_embedding(model, prompt, "prompt")
        if len(emb) != 1:
            raise ValueError(f"`prompt` must be one prompt for a sweep, got a batch of {len(emb)}.")
    for begin in range(0, len(strengths), batch_size):
        chunk = strengths[begin : begin + batch_size]
        if space == "xT":
            moved = torch.cat([apply_vector_edits(check_edits([(direction, v)]), "xT", base) for v in chunk])
            parts.append(generate(model, prompt, latents=moved, seed=[seed] * len(chunk), output=output, **kwargs))
        elif space == "prompt":
            embeds = torch.cat([apply_vector_edits(check_edits([(direction, v)]), "prompt", emb.embeds) for v in chunk])
            moved = PromptEmbedding(embeds=embeds, pooled=None if emb.pooled is None else emb.pooled.repeat(len(chunk), 1),
                                    recipe=f"{emb.recipe} swept")
            parts.append(generate(model, moved, seed=[seed] * len(chunk), output=output, **kwargs))
        else:
            parts.extend(generate(model, prompt, seed=seed, edits=[(direction, v)], output=output, **kwargs)
                         for v in chunk)
    if output == "pil":
        return [image for part in parts for image in part]
    if output == "np":
        import numpy as np

        return np.concatenate(parts)
    return torch.cat(parts)
