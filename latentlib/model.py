"""One loaded latent diffusion model, and ``load`` to get one.

``load`` reads a local diffusers folder or a hub id (Stable Diffusion 1.x/2.x,
SDXL, and their turbo/LCM variants) component by component: VAE, UNet, CLIP
text encoder(s), tokenizer(s) and scheduler. Weights load from safetensors
only unless the caller passes ``allow_pickle=True``; remote code is never run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from . import codec, prompts, sampling
from ._checks import check_choice, check_finite, check_int

__all__ = ["Model", "load", "ModelNotFoundError", "DEFAULT_MODEL"]

#: Name of the embedded default model. Its weights arrive with the default-model work.
DEFAULT_MODEL = "shapes"

# Component classes we know how to drive; anything else is refused with a clear error.
_ALLOWED = {
    "vae": {"AutoencoderKL"},
    "unet": {"UNet2DConditionModel"},
    "text_encoder": {"CLIPTextModel", "CLIPTextModelWithProjection"},
    "text_encoder_2": {"CLIPTextModel", "CLIPTextModelWithProjection"},
    "tokenizer": {"CLIPTokenizer", "CLIPTokenizerFast"},
    "tokenizer_2": {"CLIPTokenizer", "CLIPTokenizerFast"},
}
_WEIGHTED = ("vae", "unet", "text_encoder", "text_encoder_2")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class ModelNotFoundError(ValueError):
    """The model is neither a local folder nor in the local hub cache (and could not be downloaded)."""


class Model:
    """A latent diffusion model: VAE, UNet, text encoder(s), tokenizer(s), scheduler, on one device.

    Build one with :func:`load`, or directly from diffusers/transformers components
    (``Model(vae=..., unet=..., text_encoder=..., tokenizer=..., scheduler=...)``, plus
    ``text_encoder_2``/``tokenizer_2`` for SDXL).

    Attributes:
        name: where the model came from (hub id, folder, or "components").
        device, dtype: where and in what precision the networks run.
        is_sdxl: True when the UNet takes SDXL's pooled text and size conditioning.
        vae_scale_factor: pixels per latent cell (8 for Stable Diffusion).
        latent_channels: channels of the VAE latents (4 for SD/SDXL).
    """

    def __init__(self, *, vae, unet, scheduler, text_encoder=None, tokenizer=None, text_encoder_2=None,
                 tokenizer_2=None, name: str = "components", force_zeros_for_empty_prompt: bool = True):
        if (text_encoder is None) != (tokenizer is None) or (text_encoder_2 is None) != (tokenizer_2 is None):
            raise ValueError("each text encoder needs its tokenizer: pass them in pairs.")
        if text_encoder is None and text_encoder_2 is None:
            raise ValueError("a Model needs at least one text encoder and tokenizer.")
        self.vae, self.unet, self.scheduler = vae, unet, scheduler
        self.text_encoder, self.tokenizer = text_encoder, tokenizer
        self.text_encoder_2, self.tokenizer_2 = text_encoder_2, tokenizer_2
        self.name = name
        self.force_zeros_for_empty_prompt = force_zeros_for_empty_prompt
        self.fast = None  # a latentlib.fast.FastPath once accelerate() is called
        self.preview_decoder = None  # an AutoencoderTiny (TAESD) for decoder="preview"
        for module in self._modules():
            module.eval().requires_grad_(False)
        if vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
            vae.to(torch.float32)  # float16 VAEs marked force_upcast overflow (black/NaN images), as in diffusers
        self.device = unet.device
        self.dtype = unet.dtype
        self._eager_layout()
        self.is_sdxl = getattr(unet.config, "addition_embed_type", None) == "text_time"
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_channels = vae.config.latent_channels
        width = sum(e.config.hidden_size for e in (text_encoder, text_encoder_2) if e is not None) \
            if self.is_sdxl else text_encoder.config.hidden_size
        length = (tokenizer or tokenizer_2).model_max_length
        self.embedding_shape = torch.Size((length, width))
        if unet.config.cross_attention_dim != width:
            raise ValueError(
                f"the UNet's cross_attention_dim is {unet.config.cross_attention_dim} but the text encoder(s) give "
                f"{width}; these components do not belong together."
            )

    def _eager_layout(self) -> None:
        """Memory layout of the eager path: on the CPU the VAE decoder runs channels-last (oneDNN picks its
        fast convolutions for every layer then; the default model's 64x64 decode went from 10.8 to 7.3 ms on
        2 threads, outputs equal within 2e-6), elsewhere contiguous. The UNet stays contiguous: channels-last
        measured slower there (10.5 -> 11.1 ms per CFG step). The fast path sets its own layout."""
        decoder_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        for part in ("decoder", "post_quant_conv"):
            if getattr(self.vae, part, None) is not None:
                getattr(self.vae, part).to(memory_format=decoder_format)
        for part in ("encoder", "quant_conv"):
            if getattr(self.vae, part, None) is not None:
                getattr(self.vae, part).to(memory_format=torch.contiguous_format)
        self.unet.to(memory_format=torch.contiguous_format)

    def _modules(self):
        return [m for m in (self.vae, self.unet, self.text_encoder, self.text_encoder_2, self.preview_decoder)
                if m is not None]

    def __repr__(self) -> str:
        kind = "SDXL" if self.is_sdxl else "SD"
        h, w = self.default_size
        return f"Model({self.name!r}, {kind}, {w}x{h}, device={self.device}, dtype={self.dtype})"

    @property
    def default_size(self) -> tuple[int, int]:
        """(height, width) in pixels that the UNet was configured for."""
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return h * self.vae_scale_factor, w * self.vae_scale_factor

    def to(self, device=None, dtype=None) -> Model:
        """Move all networks (in place) and return self."""
        device = _resolve_device(device) if device is not None else self.device
        dtype = _resolve_dtype(dtype, device) if dtype is not None else self.dtype
        vae_dtype = _vae_dtype(getattr(self.vae.config, "force_upcast", False), dtype)
        for module in self._modules():
            target = vae_dtype if module is self.vae else dtype
            module.to(device) if module.dtype == target else module.to(device=device, dtype=target)
        moved = torch.device(device) != self.device or dtype != self.dtype
        self.device, self.dtype = torch.device(device), dtype
        if self.fast is not None and moved:  # graphs, compiled code and caches belong to the old device/dtype
            self._reaccelerate()
        elif self.fast is None:
            self._eager_layout()
        return self

    def _reaccelerate(self) -> None:
        """Apply the fast path again with the arguments it was asked for, at the model's current dtype (after a
        move, a dtype change or a new preview decoder): "auto" flags resolve for the new device."""
        from . import fast

        fast.accelerate(self, **{**self.fast._asked, "dtype": self.dtype})

    # -- the fast path (latentlib.fast) --------------------------------------
    def accelerate(self, **flags):
        """Turn on the fast path (fp16, SDPA, channels-last, torch.compile, CUDA graphs, caches); automatic
        defaults on CUDA, clean fallbacks elsewhere. Returns the :class:`latentlib.fast.FastPath` report.
        See :func:`latentlib.fast.accelerate` for the flags."""
        from . import fast

        return fast.accelerate(self, **flags)

    def decelerate(self) -> None:
        """Turn the fast path off (eager UNet and decoder, no caches, unfused attention, and cuDNN autotuning
        back to what it was before :meth:`accelerate`)."""
        from . import fast

        fast._unfuse(self.unet)
        if self.fast is not None:
            self.fast.restore_global_state()
        self.fast = None
        self._eager_layout()

    def warm_up(self, **kwargs) -> dict[str, float]:
        """Compile and capture the fast path for the shapes a session will use, now rather than on the first frame
        of each (after :meth:`accelerate`; a progress bar, and the seconds per shape returned).

        Example:
            >>> model.accelerate()
            >>> model.warm_up()          # 1 image, with and without guidance, the full and preview decoders

        See :func:`latentlib.fast.warm_up`.
        """
        from . import fast

        return fast.warm_up(self, **kwargs)

    def set_preview_decoder(self, decoder) -> None:
        """Use ``decoder`` (an ``AutoencoderTiny``, or a local folder holding one) for ``decoder="preview"``.

        ``None`` removes it (then "preview" decodes with the full VAE). Nothing is downloaded.
        """
        from . import fast

        if decoder is not None and not hasattr(decoder, "decode"):
            decoder = fast.load_preview_decoder(decoder)
        if decoder is not None and decoder.config.latent_channels != self.latent_channels:
            raise ValueError(f"`decoder` takes {decoder.config.latent_channels}-channel latents; this model's have "
                             f"{self.latent_channels}.")
        if decoder is not None:
            decoder = decoder.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)
        self.preview_decoder = decoder
        if self.fast is not None:  # re-apply the same flags so the new decoder gets them too
            self._reaccelerate()

    # -- checks shared by the operations ----------------------------------
    def _check_size(self, height, width) -> tuple[int, int]:
        dh, dw = self.default_size
        height = dh if height is None else check_int("height", height, minimum=self.vae_scale_factor)
        width = dw if width is None else check_int("width", width, minimum=self.vae_scale_factor)
        for name, value in (("height", height), ("width", width)):
            if value % self.vae_scale_factor:
                raise ValueError(
                    f"`{name}` must be divisible by {self.vae_scale_factor} (the VAE's downsampling factor), got {value}."
                )
        return height, width

    def _check_latents(self, name: str, latents, height, width) -> tuple[int, int]:
        """Check a latent tensor against the model (and height/width when given); return its pixel size."""
        if not isinstance(latents, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor (B, C, h, w), got {type(latents).__name__}.")
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise ValueError(
                f"`{name}` has shape {tuple(latents.shape)}; this model's latents are (B, {self.latent_channels}, h, w)."
            )
        if not latents.is_floating_point():
            raise TypeError(f"`{name}` must be a float tensor, got {latents.dtype}.")
        size = (latents.shape[2] * self.vae_scale_factor, latents.shape[3] * self.vae_scale_factor)
        if (height is not None and height != size[0]) or (width is not None and width != size[1]):
            raise ValueError(
                f"`{name}` has shape {tuple(latents.shape)}, i.e. {size[1]}x{size[0]} pixels, but height={height} and "
                f"width={width} were asked for; pass latents of shape (B, {self.latent_channels}, "
                f"{(height or size[0]) // self.vae_scale_factor}, {(width or size[1]) // self.vae_scale_factor})."
            )
        return size

    def _add_time_ids(self, height: int, width: int) -> torch.Tensor:
        """SDXL's micro-conditioning: original size, crop top-left, target size."""
        ids = [height, width, 0, 0, height, width]
        projection = self.text_encoder_2.config.projection_dim
        expected = self.unet.add_embedding.linear_1.in_features
        if self.unet.config.addition_time_embed_dim * len(ids) + projection != expected:
            raise ValueError(
                f"the UNet expects an added embedding of {expected} values but the size ids and the pooled "
                f"embedding give {self.unet.config.addition_time_embed_dim * len(ids) + projection}."
            )
        return torch.tensor([ids], dtype=torch.float32)

    # -- operations --------------------------------------------------------
    def encode(self, images, *, sample: bool = False, generator=None, batch_size: int = 8) -> torch.Tensor:
        """Images -> scaled VAE latents ``(B, C, H/f, W/f)``.

        Args:
            images: PIL image(s) (mode RGB), uint8 array(s) ``(H, W, 3)``/``(B, H, W, 3)``, or a float
                tensor ``(B, 3, H, W)`` in [0, 1]. Sizes must be divisible by ``vae_scale_factor``.
            sample: False takes the posterior mean; True samples it with ``generator``.
            generator: a ``torch.Generator`` or one per image (for ``sample=True``).
            batch_size: images per VAE call.

        Example:
            >>> z = model.encode(PIL.Image.open("cat.png").convert("RGB"))   # (1, 4, 64, 64) for 512x512
        """
        pixels = codec.to_pixels(images, multiple=self.vae_scale_factor, name="images")
        return codec.encode_pixels(self.vae, pixels, sample=sample, generator=generator, batch_size=batch_size,
                                   out_dtype=self.dtype)

    def decode(self, latents: torch.Tensor, *, output: str = "pil", batch_size: int = 8):
        """Scaled latents ``(B, C, h, w)`` -> images: ``"pil"`` list, ``"np"`` float (B, H, W, 3) in [0, 1],
        or ``"pt"`` float (B, 3, H, W) in [0, 1]. Decodes ``batch_size`` at a time."""
        check_choice("output", output, codec.OUTPUTS)
        self._check_latents("latents", latents, None, None)
        check_finite("latents", latents)
        return codec.decode_to_output(self.vae, latents, output, batch_size=batch_size)

    def noise(self, seed: int | Sequence[int] = 0, n: int | None = None, height: int | None = None,
              width: int | None = None) -> torch.Tensor:
        """Initial latents ``(n, C, h, w)`` for the model's default size (or ``height`` x ``width``).

        Item i comes from seed ``seed + i`` (or ``seed[i]`` for a list), drawn on the CPU, so it is
        the same alone or in a batch and on every device.
        """
        return sampling.noise(self, seed, n, height, width)

    def embed(self, prompt: str | Sequence[str]) -> prompts.PromptEmbedding:
        """Prompt(s) -> :class:`~latentlib.prompts.PromptEmbedding` (token embeddings, pooled for SDXL, tokens)."""
        return prompts.encode_prompts(self, prompt)

    def generate(self, prompt="", negative_prompt=None, **kwargs):
        """Generate images with our own readable denoising loop (same numbers as diffusers' pipelines).

        Args:
            prompt: a string, list of strings, or :class:`PromptEmbedding`. One prompt serves every image.
            negative_prompt: the same kinds; used when ``guidance > 1`` (default: empty prompt; zeros for SDXL).
            latents: initial noise ``(B, C, h, w)`` (unit variance, as from :meth:`noise`). Default: from ``seed``.
            seed: int (image i uses ``seed + i``) or list of ints. Each image's seed makes the generator
                that draws its noise, its VAE posterior sample (image-to-image) and a stochastic sampler's
                step noise, unless ``generators`` are given.
            generators: continue these CPU ``torch.Generator`` (one per image) for every draw instead of
                new ones from the seeds: a caller that has drawn from them already (as
                :func:`latentlib.inpaint.inpaint` samples the VAE posterior) keeps one stream per image,
                as diffusers' pipelines do. The batch still comes from ``seed``, ``n`` or ``latents``
                (e.g. a list of seeds as long as ``generators``; the seeds are then recorded only).
            n: number of images when latents are not given (default: the prompt batch, else 1).
            height, width: pixels (default: the model's size); must be divisible by ``vae_scale_factor``.
            steps: number of scheduler steps (>= 1).
            guidance: classifier-free guidance scale (>= 0; <= 1 disables CFG).
            guidance_rescale: CFG rescale factor in [0, 1].
            scheduler: a name from :data:`latentlib.SCHEDULERS`, "default", or a diffusers scheduler.
            eta: DDIM eta.
            image: start image(s) for image-to-image: anything :meth:`encode` accepts (encoded, as in
                diffusers, by sampling the VAE posterior with each image's generator), or latents ``(B, C, h, w)``
                with the VAE's latent channel count (used as they are, e.g. ``model.encode(img)``).
            strength: how much of the schedule to run on ``image``, in [0, 1] (default 0.8).
            edits: ``[(direction, strength), ...]``; each direction has ``space`` ("xT", "z0", "prompt"
                or "h"), ``vector``, and optionally ``scale`` and ``timesteps`` (see :mod:`latentlib.edits`).
            callback: ``f(step: Step) -> Tensor | None`` after each step; return latents to replace them,
                call ``step.stop()`` to end early.
            interrupt: a ``threading.Event``; when set, the loop stops before the next step and raises
                :class:`latentlib.Interrupted` (holding the latents so far) without decoding.
            output: "pil", "np", "pt" or "latent".
            return_latents: also return the final latents: ``(images, latents)``.
            decoder: "full" (the VAE) or "preview" (the preview decoder set with :meth:`set_preview_decoder`,
                e.g. TAESD; the full VAE when none is set).
            progress: show a progress bar.

        Returns:
            List of PIL images (or array/tensor per ``output``).

        Example:
            >>> images = model.generate("a red circle", seed=0, steps=20, scheduler="dpm++2m-karras")
        """
        return sampling.generate(self, prompt, negative_prompt, **kwargs)

    def sweep(self, prompt, direction, strengths, **kwargs):
        """One seed's frames along ``direction`` at each strength, batched for xT and prompt directions.

        Example:
            >>> frames = model.sweep("a red circle", direction, [-3, -1.5, 0, 1.5, 3], seed=0, steps=8)

        See :func:`latentlib.sampling.sweep`.
        """
        return sampling.sweep(self, prompt, direction, strengths, **kwargs)

    def inpaint(self, image, mask, prompt="", **kwargs):
        """Repaint the white part of ``mask`` in ``image`` (latent blend on the generation loop, then
        paste-back over the original with the feathered mask). See :func:`latentlib.inpaint.inpaint`.

        Example:
            >>> out = model.inpaint(image, mask, "a blue square", strength=1.0, grow=2, feather=4, seed=0)
        """
        from . import inpaint

        return inpaint.inpaint(self, image, mask, prompt, **kwargs)


# -- loading --------------------------------------------------------------

def _resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cpu")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"`device` {device!r} is not a device; use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'.") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`device` {device!r} was asked for but CUDA is not available here; use 'cpu' or 'auto'.")
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"`device` {device!r} was asked for but MPS is not available here; use 'cpu' or 'auto'.")
    return resolved


_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}


def _resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"`dtype` {dtype!r} is not known; use one of {', '.join(_DTYPES)} or a torch.dtype.")
        return _DTYPES[dtype]
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"`dtype` must be torch.float32, torch.float16 or torch.bfloat16, got {dtype!r}.")
    return dtype


def _vae_dtype(force_upcast: bool, dtype: torch.dtype) -> torch.dtype:
    # VAEs marked force_upcast (SD's and SDXL's) overflow in float16: keep them in float32, as diffusers does.
    if dtype == torch.float16 and force_upcast:
        return torch.float32
    return dtype


def _hub_patterns(variant: str | None, allow_pickle: bool) -> list[str]:
    patterns = ["model_index.json", "scheduler/*", "tokenizer/*", "tokenizer_2/*"]
    exts = ["safetensors"] + (["bin"] if allow_pickle else [])
    for comp in _WEIGHTED:
        patterns.append(f"{comp}/config.json")
        for ext in exts:
            if variant:
                patterns += [f"{comp}/*.{variant}.{ext}", f"{comp}/*.{variant}-*-of-*.{ext}",
                             f"{comp}/*.{ext}.index.{variant}.json"]
            else:
                patterns += [f"{comp}/diffusion_pytorch_model.{ext}", f"{comp}/model.{ext}",
                             f"{comp}/pytorch_model.{ext}", f"{comp}/*model-*-of-*.{ext}", f"{comp}/*.{ext}.index.json"]
    return patterns


def _from_hub(repo_id: str, *, revision, variant, allow_pickle) -> Path:
    from huggingface_hub import constants, snapshot_download

    offline = bool(constants.HF_HUB_OFFLINE)
    how = (
        "Run once with network access to fill the local cache (e.g. latentlib.load(...) without "
        "HF_HUB_OFFLINE=1, or `huggingface-cli download " + repo_id + "`), or pass a local diffusers folder."
    )
    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=offline,
                                      allow_patterns=_hub_patterns(variant, allow_pickle)))
    except Exception as error:  # huggingface_hub raises many types (offline, 404, gated, network)
        state = "offline (HF_HUB_OFFLINE=1) and not in the local cache" if offline else \
            f"not available ({type(error).__name__}: {error})"
        raise ModelNotFoundError(
            f"model {repo_id!r} is not a local folder and is {state}. {how}"
        ) from error


def _read_index(folder: Path, name: str) -> dict:
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise ValueError(
            f"{name!r} is not a diffusers model folder: {index_path} is missing. latentlib loads folders saved by "
            f"diffusers' save_pretrained (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)."
        )
    with open(index_path) as f:
        index = json.load(f)
    for comp in ("vae", "unet", "scheduler"):
        if not isinstance(index.get(comp), list) or index[comp][1] is None:
            raise ValueError(f"{name!r} has no `{comp}` component in model_index.json; latentlib needs one.")
    for comp, allowed in _ALLOWED.items():
        entry = index.get(comp)
        if isinstance(entry, list) and entry[1] is not None and entry[1] not in allowed:
            raise ValueError(
                f"{name!r}: component `{comp}` is a {entry[1]}; latentlib supports {', '.join(sorted(allowed))} "
                f"(Stable Diffusion 1.x/2.x, SDXL and their turbo/LCM variants)."
            )
    return index


def _check_weights(folder: Path, index: dict, name: str, variant: str | None, allow_pickle: bool) -> None:
    for comp in _WEIGHTED:
        entry = index.get(comp)
        if not (isinstance(entry, list) and entry[1] is not None):
            continue
        files = [p.name for p in (folder / comp).glob("*")] if (folder / comp).is_dir() else []
        # "model.safetensors" / "model-00001-of-00002.safetensors" are plain; "model.fp16.safetensors" a variant
        safe = [f for f in files if f.endswith(".safetensors") and (
            f.count(".") == 1 if variant is None else (f".{variant}." in f or f".{variant}-" in f))]
        pickles = [f for f in files if f.endswith(_PICKLE_SUFFIXES)]
        if safe:
            continue
        if pickles and not allow_pickle:
            raise ValueError(
                f"{name!r}: `{comp}` has only pickle weights ({', '.join(sorted(pickles))}), which can run arbitrary "
                f"code when loaded. Convert them to safetensors, or pass allow_pickle=True if you trust the source."
            )
        if not pickles:
            wanted = f"*.{variant}.safetensors" if variant else "*.safetensors"
            raise ValueError(f"{name!r}: `{comp}` has no weights ({wanted}) in {folder / comp}.")


def load(name_or_path: str | os.PathLike | None = None, *, device=None, dtype=None, variant: str | None = None,
         revision: str | None = None, allow_pickle: bool = False) -> Model:
    """Load a latent diffusion model.

    Args:
        name_or_path: a local diffusers folder, or a hub id such as ``"stabilityai/sd-turbo"``
            (read from the local cache when ``HF_HUB_OFFLINE=1``). ``None`` (or ``"shapes"``) is the
            embedded default model.
        device: ``None``/"cpu" (default), "cuda", "cuda:N", "mps", or "auto" (CUDA, then MPS, then CPU).
        dtype: torch dtype or its name; default float32 on CPU/MPS, float16 on CUDA.
        variant: weight variant such as "fp16" (files ``*.fp16.safetensors``).
        revision: hub revision (branch, tag or commit).
        allow_pickle: also accept ``.bin``/``.ckpt`` weights. Off by default: unpickling can run code.

    Returns:
        :class:`Model`.

    Example:
        >>> model = latentlib.load("path/to/diffusers/folder")
        >>> model = latentlib.load("stabilityai/sd-turbo", device="cuda", dtype=torch.float16)
    """
    if name_or_path is None or name_or_path == DEFAULT_MODEL:
        from .shapes_model import MODEL_DIR

        if not (MODEL_DIR / "model_index.json").is_file():
            raise ModelNotFoundError(
                f"the embedded default model ({DEFAULT_MODEL!r}) is missing from {MODEL_DIR}; reinstall latentlib "
                "or train it with `python -m latentlib.train_shapes all --out runs/shapes`."
            )
        if revision is not None:
            raise ValueError(f"`revision` ({revision!r}) applies to hub ids; {DEFAULT_MODEL!r} ships with latentlib.")
        model = load(MODEL_DIR, device=device, dtype=dtype, variant=variant)
        model.name = DEFAULT_MODEL
        return model
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"`name_or_path` must be a string or path, got {type(name_or_path).__name__}.")
    device = _resolve_device(device)
    dtype = _resolve_dtype(dtype, device)
    name = os.fspath(name_or_path)
    folder = Path(name).expanduser()
    if folder.is_dir():
        if revision is not None:
            raise ValueError(f"`revision` ({revision!r}) applies to hub ids; {name!r} is a local folder.")
    elif folder.exists() or name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ModelNotFoundError(f"`name_or_path` {name!r} is not a folder (a diffusers model folder was expected).")
    else:
        folder = _from_hub(name, revision=revision, variant=variant, allow_pickle=allow_pickle)
    index = _read_index(folder, name)
    _check_weights(folder, index, name, variant, allow_pickle)
    return _load_components(folder, index, name, device, dtype, variant, allow_pickle)


def _load_components(folder, index, name, device, dtype, variant, allow_pickle) -> Model:
    import diffusers
    import transformers

    use_safetensors = None if allow_pickle else True
    parts = {}
    for comp, entry in index.items():
        if comp.startswith("_") or not isinstance(entry, list) or entry[1] is None:
            continue
        library, cls_name = entry
        if comp == "scheduler":
            cls = getattr(diffusers, cls_name, None)
            if cls is None or not cls_name.endswith("Scheduler"):
                raise ValueError(f"{name!r}: scheduler class {cls_name!r} is not a diffusers scheduler.")
            parts[comp] = cls.from_config(cls.load_config(folder, subfolder=comp))
        elif comp in ("tokenizer", "tokenizer_2"):
            parts[comp] = getattr(transformers, cls_name).from_pretrained(folder, subfolder=comp)
        elif comp in ("text_encoder", "text_encoder_2"):
            parts[comp] = getattr(transformers, cls_name).from_pretrained(
                folder, subfolder=comp, dtype=dtype, use_safetensors=use_safetensors, variant=variant
            )
        elif comp in ("vae", "unet"):
            cls = getattr(diffusers, cls_name)
            comp_dtype = dtype
            if comp == "vae" and dtype == torch.float16:
                comp_dtype = _vae_dtype(cls.load_config(folder, subfolder=comp).get("force_upcast", True), dtype)
            parts[comp] = cls.from_pretrained(
                folder, subfolder=comp, torch_dtype=comp_dtype, use_safetensors=use_safetensors, variant=variant
            )
        # other components (safety_checker, feature_extractor, image_encoder) are not used
    vae = parts["vae"]
    for comp in ("vae", "unet", "text_encoder", "text_encoder_2"):
        if comp in parts:
            parts[comp].to(device)
    return Model(
        vae=vae,
        unet=parts["unet"],
        scheduler=parts["scheduler"],
        text_encoder=parts.get("text_encoder"),
        tokenizer=parts.get("tokenizer"),
        text_encoder_2=parts.get("text_encoder_2"),
        tokenizer_2=parts.get("tokenizer_2"),
        name=name,
        force_zeros_for_empty_prompt=bool(index.get("force_zeros_for_empty_prompt", True)),
    )
