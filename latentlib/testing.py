"""Tiny random Stable Diffusion components, built locally for tests, benchmarks and demos.

Nothing here touches a hub: the tokenizer is a byte-level CLIP BPE built from a
small word list, and every network is initialised from a fixed seed, in the
spirit of diffusers' ``get_dummy_components``. Images made with these models
are noise; they exist to exercise code paths, not to look good.

Example:
    >>> from latentlib.testing import tiny_sd_components
    >>> parts = tiny_sd_components()
    >>> sorted(parts)
    ['scheduler', 'text_encoder', 'tokenizer', 'unet', 'vae']
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = [
    "WORDS",
    "build_clip_tokenizer",
    "tiny_sd_components",
    "tiny_sdxl_components",
    "tiny_preview_decoder",
    "save_tiny_model",
    "run_in_threads",
]

#: Words that get their own BPE token in the tiny tokenizer; anything else is spelled out in bytes.
WORDS = (
    "a an the of on in with and small large big tiny red green blue yellow orange purple pink "
    "white black gray cyan circle square triangle star cross photo painting cat dog background "
    "top bottom left right center upper lower"
).split()


def build_clip_tokenizer(words=WORDS, *, max_length: int = 77):
    """A CLIP byte-level BPE tokenizer whose vocabulary is the 256 bytes plus ``words``.

    Args:
        words: words that become single tokens (lower case).
        max_length: the tokenizer's ``model_max_length`` (CLIP uses 77).

    Returns:
        ``transformers.CLIPTokenizer`` with ``<|startoftext|>`` / ``<|endoftext|>`` specials.
    """
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    from .vocabulary import learn_merges

    vocab, merges = learn_merges(list(dict.fromkeys(words)), specials=["<|startoftext|>", "<|endoftext|>"])
    for symbol in sorted(ByteLevel.alphabet()):  # every byte, so any text encodes without an unknown token
        vocab.setdefault(symbol, len(vocab))
        vocab.setdefault(symbol + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    tokenizer.model_max_length = max_length
    return tokenizer


def _text_encoder_config(tokenizer, *, hidden_size: int = 32, projection_dim: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=hidden_size,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=3,
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        hidden_act="gelu",
        projection_dim=projection_dim,
    )


def _tiny_vae(seed: int):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    # Four blocks: downsampling factor 8, like Stable Diffusion's VAE.
    return AutoencoderKL(
        block_out_channels=(8, 8, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    )


# Two resolution levels, cross-attention on the lower one: diffusers' dummy-component layout.
_UNET_LAYOUT = dict(
    block_out_channels=(32, 64),
    layers_per_block=1,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
)


def _scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def tiny_sd_components(seed: int = 0, *, sample_size: int = 8, in_channels: int = 4) -> dict:
    """Random SD-1.5-shaped components (UNet with cross-attention, f=8 VAE, CLIP text encoder).

    Args:
        seed: seeds every network's initialisation.
        sample_size: UNet latent size; images are ``8 * sample_size`` pixels square.
        in_channels: 4, or 9 for an inpainting UNet (latents + mask + masked image latents).

    Returns:
        dict with ``vae``, ``unet``, ``text_encoder``, ``tokenizer``, ``scheduler``.
    """
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = build_clip_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        **{**_UNET_LAYOUT, "in_channels": in_channels},
        sample_size=sample_size,
        cross_attention_dim=32,
        norm_num_groups=32,
    )
    vae = _tiny_vae(seed)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_text_encoder_config(tokenizer))
    return {
        "vae": vae.eval(),
        "unet": unet.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": tokenizer,
        "scheduler": _scheduler(),
    }


def tiny_sdxl_components(seed: int = 0, *, sample_size: int = 8) -> dict:
    """Random SDXL-shaped components: two text encoders, pooled embedding, ``text_time`` conditioning.

    Returns:
        dict with ``vae``, ``unet``, ``text_encoder``, ``text_encoder_2``, ``tokenizer``,
        ``tokenizer_2``, ``scheduler``.
    """
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = build_clip_tokenizer()
    tokenizer_2 = build_clip_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        **_UNET_LAYOUT,
        sample_size=sample_size,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six time ids + pooled projection
        cross_attention_dim=64,  # 32 (encoder 1) + 32 (encoder 2)
        norm_num_groups=1,
    )
    vae = _tiny_vae(seed)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_text_encoder_config(tokenizer))
    torch.manual_seed(seed + 1)
    text_encoder_2 = CLIPTextModelWithProjection(_text_encoder_config(tokenizer_2))
    return {
        "vae": vae.eval(),
        "unet": unet.eval(),
        "text_encoder": text_encoder.eval(),
        "text_encoder_2": text_encoder_2.eval(),
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        "scheduler": _scheduler(),
    }


def save_tiny_model(path: str | os.PathLike, *, kind: str = "sd", seed: int = 0) -> Path:
    """Save tiny random components as a diffusers folder (safetensors) that ``latentlib.load`` reads.

    Args:
        path: folder to create (must not exist, or be empty).
        kind: ``"sd"`` (StableDiffusionPipeline layout) or ``"sdxl"``.
        seed: initialisation seed.
    """
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise ValueError(f"`path` {str(path)!r} exists and is not empty; pass a new folder.")
    if kind == "sd":
        pipe = StableDiffusionPipeline(
            **tiny_sd_components(seed), safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    elif kind == "sdxl":
        pipe = StableDiffusionXLPipeline(**tiny_sdxl_components(seed))
    else:
        raise ValueError(f"`kind` must be 'sd' or 'sdxl', got {kind!r}.")
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def tiny_preview_decoder(seed: int = 0, *, latent_channels: int = 4):
    """A random ``AutoencoderTiny`` (TAESD's layout, narrow): f=8, for ``decoder="preview"`` tests and benchmarks."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    return AutoencoderTiny(
        encoder_block_out_channels=(16, 16, 16, 16), decoder_block_out_channels=(16, 16, 16, 16),
        num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1), latent_channels=latent_channels,
    ).eval()


def run_in_threads(work, n: int) -> list[BaseException]:
    """Run ``work(k)`` for k in range(n), each on its own thread, all at once; return the exceptions raised."""
    import threading

    errors = []

    def guarded(k):
        try:
            work(k)
        except Exception as error:  # noqa: BLE001 - returned to the caller, which asserts on them
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
