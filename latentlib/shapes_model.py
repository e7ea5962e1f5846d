"""The default model's architecture: the diffusers/transformers parts of "shapes" and how they fit together.

Everything here is a standard Stable Diffusion class, small: an ``AutoencoderKL`` with downsampling
factor 8 (64x64 RGB -> 8x8x4 latents), a ``CLIPTextModel`` over a word-level tokenizer built from the
caption vocabulary, and a ``UNet2DConditionModel`` with cross-attention. ``train_shapes`` trains the parts;
:func:`assemble` writes them as a diffusers folder that ``StableDiffusionPipeline.from_pretrained`` and
``latentlib.load`` both read.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from . import shapes
from .vocabulary import build_word_tokenizer

__all__ = [
    "MAX_TOKENS",
    "MODEL_DIR",
    "TextFactorHeads",
    "assemble",
    "build_tokenizer",
    "caption_targets",
    "center_latents",
    "new_scheduler",
    "new_text_encoder",
    "new_unet",
    "new_vae",
]

#: Where the trained default model ships (package data).
MODEL_DIR = Path(__file__).parent / "weights" / "shapes"
#: Captions are short; the text encoder reads this many tokens (start and end tokens included).
MAX_TOKENS = 24


def build_tokenizer():
    """CLIP tokenizer over the caption vocabulary (unknown words -> ``<|unk|>``)."""
    return build_word_tokenizer(shapes.vocabulary(), max_length=MAX_TOKENS)


def new_vae():
    """AutoencoderKL, f=8: four blocks (three downsamplings), 4 latent channels."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 64, 64), layers_per_block=1, norm_num_groups=8,
    )


def new_text_encoder(tokenizer):
    """A small CLIPTextModel whose token table matches ``tokenizer``."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=256, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=64,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def new_unet(cross_attention_dim: int = 64, *, text_time: bool = True):
    """UNet2DConditionModel on 8x8x4 latents: 8x8 (residual) -> 4x4 (residual + cross-attention).

    No mid block: at 4x4 the cross-attention blocks already see the whole latent, and the mid block would
    cost a fifth of every step on a 2-core CPU. With ``text_time`` the prompt also reaches every residual
    block through the time embedding (diffusers' ``addition_embed_type="text"``: attention-pooled token
    embeddings, as in unCLIP/Kandinsky), so the 8x8 blocks, which have no cross-attention, hear which
    shape and colour to draw. It needs nothing beyond ``encoder_hidden_states``, so
    StableDiffusionPipeline runs it unchanged.
    """
    from diffusers import UNet2DConditionModel

    extra = {"addition_embed_type": "text", "addition_embed_type_num_heads": 4} if text_time else {}
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(64, 128),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        mid_block_type=None, cross_attention_dim=cross_attention_dim, attention_head_dim=16, norm_num_groups=32,
        **extra,
    )


def new_scheduler():
    """Training noise schedule (SD's scaled-linear betas, epsilon prediction); sampling uses DPM++ 2M on it."""
    from diffusers import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
        prediction_type="epsilon", algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="leading",
        steps_offset=1,
    )
    # Stable Diffusion's settings for the other samplers (DPM-solver ignores them): a diffusers user who swaps
    # in DDIMScheduler.from_config(...) gets no pixel-space x0 clipping.
    scheduler.register_to_config(clip_sample=False, set_alpha_to_one=False, skip_prk_steps=True)
    return scheduler


# -- text encoder training: caption -> the factors it names -----------------------------------------------

_SIZE_WORDS = {"small": "small", "tiny": "small", "medium": "medium", "large": "large", "big": "large"}
_ROWS, _COLS, _SIZES = ("top", "middle", "bottom"), ("left", "middle", "right"), ("small", "medium", "large")
#: factor -> its classes, in head order.
FACTOR_CLASSES = {"present": ("no", "yes"), "shape": shapes.SHAPES, "color": tuple(shapes.COLORS),
                  "background": tuple(shapes.BACKGROUNDS), "size": _SIZES, "row": _ROWS, "col": _COLS}


def caption_factors(text: str) -> dict[str, str]:
    """The factors a caption names, read back from its words (a factor it leaves out is absent)."""
    words = text.replace(",", " ").split()
    found: dict[str, str] = {}
    if not words:
        return found
    if any(w in ("empty", "plain", "nothing") for w in words):
        found["present"] = "no"
    for word in words:
        if word in shapes.COLORS:
            found["color"] = word
        elif word in shapes.BACKGROUNDS:
            found["background"] = word
        elif word in _SIZE_WORDS:
            found["size"] = _SIZE_WORDS[word]
    for shape, options in (("circle", ("circle", "disc", "dot")), ("square", ("square", "box")),
                           ("triangle", ("triangle",)), ("star", ("star",)), ("cross", ("cross", "plus"))):
        if any(w in options for w in words):
            found["shape"], found["present"] = shape, "yes"
    position = [w for w in words if w in ("top", "bottom", "left", "right", "center")]
    if position:
        found["row"] = "top" if "top" in position else "bottom" if "bottom" in position else "middle"
        found["col"] = "left" if "left" in position else "right" if "right" in position else "middle"
    return found


def caption_targets(texts: list[str]) -> dict[str, torch.Tensor]:
    """Class index per factor, -100 (ignored by cross-entropy) where a caption does not name it."""
    out = {name: torch.full((len(texts),), -100, dtype=torch.long) for name in FACTOR_CLASSES}
    for i, text in enumerate(texts):
        for name, value in caption_factors(text).items():
            out[name][i] = FACTOR_CLASSES[name].index(value)
    return out


class TextFactorHeads(nn.Module):
    """Linear read-outs of every caption factor from the text encoder's pooled (end-token) state.

    Used only to train the text encoder; the UNet reads the per-token states, which this objective
    forces to carry each word's meaning (the end token attends to them).
    """

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, len(c)) for name, c in FACTOR_CLASSES.items()})

    def forward(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(pooled) for name, head in self.heads.items()}


def center_latents(vae, mean: torch.Tensor) -> None:
    """Fold a per-channel latent mean into the VAE so that its latents are centred (in place).

    The encoder's ``quant_conv`` bias drops the mean; the decoder's 1x1 ``post_quant_conv`` adds it back,
    so decode(encode(x)) is unchanged and Stable Diffusion pipelines (which only scale latents) see
    zero-mean latents.
    """
    c = vae.config.latent_channels
    mean = mean.to(vae.quant_conv.bias)
    with torch.no_grad():
        vae.quant_conv.bias[:c] -= mean
        weight = vae.post_quant_conv.weight[:, :, 0, 0]  # (out, in)
        vae.post_quant_conv.bias += weight @ mean


WORLD_FILE = "world.json"


def world(folder: str | Path) -> dict:
    """The shapes world a model folder was trained on: ``{"hue_spread": ...}`` from its ``world.json``
    (:func:`latentlib.shapes.sample_scene`); a folder without one learned the discrete world (0)."""
    path = Path(folder).expanduser() / WORLD_FILE
    try:
        found = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); it should hold {{\"hue_spread\": 0..1}}.") from None
    if not isinstance(found, dict):
        raise ValueError(f"{path} should hold {{\"hue_spread\": 0..1}}, got {found!r}.")
    try:
        return {"hue_spread": shapes._check_spread(found.get("hue_spread", 0.0))}
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def assemble(out: str | Path, *, vae, text_encoder, tokenizer, unet, scheduler=None, world: dict | None = None) -> Path:
    """Write a diffusers ``StableDiffusionPipeline`` folder (safetensors only, no safety checker); ``world``
    (``{"hue_spread": ...}``), where given, goes to its ``world.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if world is not None:
        (out / WORLD_FILE).write_text(json.dumps(world, indent=1) + "\n")
    elif (out / WORLD_FILE).exists():
        (out / WORLD_FILE).unlink()  # an earlier model's world, not this one's
    vae.save_pretrained(out / "vae", safe_serialization=True)
    unet.save_pretrained(out / "unet", safe_serialization=True)
    text_encoder.save_pretrained(out / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(out / "tokenizer")
    (scheduler or new_scheduler()).save_pretrained(out / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": _diffusers_version(),
        "feature_extractor": [None, None], "image_encoder": [None, None], "requires_safety_checker": False,
        "safety_checker": [None, None], "scheduler": ["diffusers", type(scheduler or new_scheduler()).__name__],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
    }
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return out


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__
