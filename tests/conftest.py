"""Fixtures: tiny random SD- and SDXL-shaped models built locally. No hub access anywhere."""

import os
import tempfile

# Before anything imports huggingface_hub: never reach a hub, and use a private cache.
os.environ["HF_HUB_OFFLINE"] = "1"
# Never the user's real cache: tests write fake hub snapshots into it.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="latentlib-hf-home-")
os.environ["HF_HUB_CACHE"] = os.path.join(os.environ["HF_HOME"], "hub")
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TRANSFORMERS_VERBOSITY"] = "error"

import pytest  # noqa: E402
import torch  # noqa: E402

import latentlib as ll  # noqa: E402
from latentlib.testing import save_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def sd_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd", kind="sd")


@pytest.fixture(scope="session")
def sdxl_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sdxl", kind="sdxl")


@pytest.fixture(scope="session")
def sd(sd_dir):
    return ll.load(sd_dir)


@pytest.fixture(scope="session")
def sdxl(sdxl_dir):
    return ll.load(sdxl_dir)


@pytest.fixture(scope="session")
def sd_pipe(sd):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=sd.vae, unet=sd.unet, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, scheduler=sd.scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def sdxl_pipe(sdxl):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(
        vae=sdxl.vae, unet=sdxl.unet, text_encoder=sdxl.text_encoder, text_encoder_2=sdxl.text_encoder_2,
        tokenizer=sdxl.tokenizer, tokenizer_2=sdxl.tokenizer_2, scheduler=sdxl.scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def images():
    """Three deterministic 64x64 RGB test images as a float tensor (3, 3, 64, 64) in [0, 1]."""
    g = torch.Generator().manual_seed(1234)
    smooth = torch.nn.functional.interpolate(torch.rand(3, 3, 8, 8, generator=g), size=64, mode="bilinear")
    return smooth.clamp(0, 1)
