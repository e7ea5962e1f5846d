"""Collect samples of a space (z0, xT, h, prompt) with their metadata, cached on disk.

    >>> samples = ll.collect(model, "h", prompts="a red circle", seeds=range(256), probe=probes.load_probe())
    >>> pca = ll.PCADirections(8).fit(samples.X, space=samples.space)

The cache key is made of everything that produced the samples (the model's weight hash and shapes,
the space, prompts, seeds, images, sampler settings, the h step, the probe, latentlib's version), so a
second identical call loads them instead of recomputing; anything different makes a new entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .edits import BOTTLENECK, SPACES, h_hook

__all__ = ["Samples", "collect", "default_cache_dir"]


@dataclass
class Samples:
    """Collected samples.

    Attributes:
        X: ``(N, *sample_shape)`` float32 tensor on the CPU.
        space: the space they live in.
        meta: one dict per sample (``seed``, ``prompt`` or ``image`` index).
        labels: the probe's estimates per sample (name -> array), or None without a probe.
        key: the cache key; settings: what produced them.
    """

    X: torch.Tensor
    space: str
    meta: list[dict]
    labels: dict[str, np.ndarray] | None = None
    key: str = ""
    settings: dict = field(default_factory=dict)
    from_cache: bool = False

    def __len__(self) -> int:
        return self.X.shape[0]


def default_cache_dir() -> Path:
    """``$LATENTLIB_CACHE/samples``, default ``~/.cache/latentlib/samples``."""
    root = os.environ.get("LATENTLIB_CACHE") or Path.home() / ".cache" / "latentlib"
    return Path(root) / "samples"


def _pairs(prompts, seeds, images) -> tuple[list, list]:
    if images is not None:
        return [], []
    if seeds is None and prompts is None:
        raise ValueError("give `prompts`, `seeds` or `images` to collect from.")
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(seeds))
    if seeds is not None:
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("`seeds` is empty.")
    if prompts is None:
        prompts = ""
    if isinstance(prompts, str):
        seeds = seeds if seeds is not None else [0]
        return [prompts] * len(seeds), seeds
    prompts = list(prompts)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise TypeError("`prompts` must be a string or a non-empty list of strings.")
    if seeds is None:
        seeds = list(range(len(prompts)))
    if len(seeds) != len(prompts):
        raise ValueError(f"`prompts` lists {len(prompts)} prompts but `seeds` lists {len(seeds)}; give one prompt, "
                         f"or one seed per prompt.")
    return prompts, seeds


def _probe_id(probe) -> str | None:
    if probe is None:
        return None
    net = getattr(probe, "net", None)
    if isinstance(net, torch.nn.Module):
        digest = hashlib.sha256()
        for key, value in net.state_dict().items():
            digest.update(key.encode())
            digest.update(value.flatten()[:64].float().cpu().numpy().tobytes())
        return f"{type(probe).__qualname__}:{digest.hexdigest()[:12]}"
    return getattr(probe, "name", None) or f"{type(probe).__module__}.{type(probe).__qualname__}"


def collect(model, space: str, *, prompts=None, seeds=None, images=None, steps: int = 20, guidance: float = 5.0,
            scheduler=None, h_step: int | None = None, h_layer: str | None = None, probe=None, batch_size: int = 16,
            cache: bool = True, cache_dir=None, progress: bool = True) -> Samples:
    """Samples of ``space`` for the model, with metadata and (given a probe) its labels.

    Args:
        space: "xT" (each seed's initial noise), "z0" (VAE latents of ``images``, or of the images generated
            from prompts and seeds), "h" (the UNet's bottleneck, conditional half, at denoising step
            ``h_step`` of each generation; default the middle step), "prompt" (token embeddings).
        h_layer: for h: where in the UNet (None or "bottleneck": the bottleneck; or a module name such as
            "up_blocks.0", see :func:`latentlib.edits.h_layers`). Directions found from these samples take the
            same ``layer=``.
        prompts: one prompt for every seed, or one per seed.
        seeds: a list of ints, or a count ``n`` for seeds ``0..n-1``.
        images: for z0: anything ``model.encode`` takes (then prompts/seeds are not used).
        steps, guidance, scheduler: generation settings (xT/prompt use them only to make images for the probe).
        probe: images -> dict of arrays (e.g. ``latentlib.probes.load_probe()``); labels the samples.
        cache, cache_dir: reuse and store results under :func:`default_cache_dir`.
    """
    if space not in SPACES:
        raise ValueError(f"`space` must be one of {', '.join(SPACES)}; got {space!r}.")
    if images is not None and space != "z0":
        raise ValueError(f"`images` are collected in the z0 space only; got space {space!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.")
    prompt_list, seed_list = _pairs(prompts, seeds, images)
    n_steps = steps
    if h_step is None:
        h_step = n_steps // 2
    if space == "h" and not 0 <= h_step < n_steps:
        raise ValueError(f"`h_step` must be a step index in [0, {n_steps - 1}], got {h_step}.")
    if h_layer is not None and space != "h":
        raise ValueError(f"`h_layer` ({h_layer!r}) applies to the h space only; got space {space!r}.")
    if h_layer == BOTTLENECK:
        h_layer = None  # the same samples, under the same cache key
    if h_layer is not None:
        h_hook(model.unet, lambda h: None, h_layer).remove()  # an unknown layer fails here, naming the choices
    image_pixels = None
    if images is not None:
        from .codec import to_pixels

        image_pixels = to_pixels(images, multiple=model.vae_scale_factor, name="images")
    from . import __version__
    from .directions import weight_hash

    settings = {"space": space, "model": {"name": str(model.name), "weight_hash": weight_hash(model)},
                "prompts": prompt_list, "seeds": seed_list, "steps": steps, "guidance": guidance,
                "scheduler": scheduler if isinstance(scheduler, (str, type(None))) else type(scheduler).__name__,
                "h_step": h_step if space == "h" else None, **({"h_layer": h_layer} if h_layer is not None else {}),
                "probe": _probe_id(probe), "latentlib": __version__,
                "images": None if image_pixels is None else hashlib.sha256(image_pixels.numpy().tobytes()).hexdigest()[:16],
                "device": str(model.device), "dtype": str(model.dtype)}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if cache:
        found = _load(folder, key, space)
        if found is not None:
            return found

    xs, metas, pictures = [], [], []
    if image_pixels is not None:
        for begin in tqdm(range(0, image_pixels.shape[0], batch_size), desc=f"collect {space}", disable=not progress):
            chunk = image_pixels[begin : begin + batch_size]
            xs.append(model.encode(chunk).float().cpu())
            pictures.append(chunk)
        metas = [{"image": i} for i in range(image_pixels.shape[0])]
    else:
        bar = tqdm(total=len(seed_list), desc=f"collect {space}", disable=not progress)
        for begin in range(0, len(seed_list), batch_size):
            p, s = prompt_list[begin : begin + batch_size], seed_list[begin : begin + batch_size]
            x, pics = _batch(model, space, p, s, steps, guidance, scheduler, h_step, need_images=probe is not None,
                             h_layer=h_layer)
            xs.append(x)
            if pics is not None:
                pictures.append(pics)
            metas += [{"seed": seed, "prompt": prompt} for prompt, seed in zip(p, s, strict=True)]
            bar.update(len(s))
        bar.close()
    X = torch.cat(xs)
    labels = None
    if probe is not None:
        found = probe(torch.cat(pictures))
        labels = {k: np.asarray(v) for k, v in found.items()}
    samples = Samples(X=X, space=space, meta=metas, labels=labels, key=key, settings=settings)
    if cache:
        _save(folder, samples)
    return samples


@torch.no_grad()
def _batch(model, space, prompts, seeds, steps, guidance, scheduler, h_step, need_images, h_layer=None):
    """One batch: (samples, images in [0, 1] (B, 3, H, W) or None)."""
    kw = {"steps": steps, "guidance": guidance, "scheduler": scheduler, "progress": False}
    if space == "xT":
        x = model.noise(seeds).float().cpu()
        pics = model.generate(prompts, seed=seeds, output="pt", **kw) if need_images else None
        return x, pics
    if space == "prompt":
        x = model.embed(prompts).embeds.float().cpu()
        pics = model.generate(prompts, seed=seeds, output="pt", **kw) if need_images else None
        return x, pics
    if space == "z0":
        pics, z = model.generate(prompts, seed=seeds, output="pt", return_latents=True, **kw)
        return z.float().cpu(), pics if need_images else None
    # h: capture the bottleneck (or h_layer's output) during step h_step (the conditional half under CFG)
    state = {"step": 0, "h": None}

    def grab(h):
        if state["step"] == h_step and state["h"] is None:
            state["h"] = h[-len(seeds):].float().cpu()  # CFG batches are [uncond, cond]

    def advance(step):
        state["step"] = step.index + 1

    handle = h_hook(model.unet, grab, h_layer)
    try:
        pics = model.generate(prompts, seed=seeds, output="pt", callback=advance, **kw)
    finally:
        handle.remove()
    if state["h"] is None:  # pragma: no cover - a sampler that skipped the step
        raise RuntimeError(f"step {h_step} did not run; use an h_step below the number of steps taken.")
    return state["h"], pics if need_images else None


def _save(folder: Path, samples: Samples) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"X": samples.X.contiguous()}
    for name, value in (samples.labels or {}).items():
        if value.dtype.kind in "fiub":
            tensors[f"label.{name}"] = torch.from_numpy(np.ascontiguousarray(value)).contiguous()
    text_labels = {k: v.tolist() for k, v in (samples.labels or {}).items() if v.dtype.kind not in "fiub"}
    tmp = folder / f"{samples.key}.tmp.safetensors"
    save_file(tensors, str(tmp))
    (folder / f"{samples.key}.json").write_text(json.dumps(
        {"settings": samples.settings, "meta": samples.meta, "text_labels": text_labels,
         "has_labels": samples.labels is not None}, default=str))
    tmp.replace(folder / f"{samples.key}.safetensors")


def _load(folder: Path, key: str, space: str) -> Samples | None:
    from safetensors.torch import load_file

    tensors_path, meta_path = folder / f"{key}.safetensors", folder / f"{key}.json"
    if not (tensors_path.is_file() and meta_path.is_file()):
        return None
    info = json.loads(meta_path.read_text())
    tensors = load_file(str(tensors_path))
    labels = None
    if info["has_labels"]:
        labels = {k[len("label."):]: v.numpy() for k, v in tensors.items() if k.startswith("label.")}
        labels.update({k: np.array(v, dtype=object) for k, v in info["text_labels"].items()})
    return Samples(X=tensors["X"], space=space, meta=info["meta"], labels=labels, key=key, settings=info["settings"],
                   from_cache=True)

