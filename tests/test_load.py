"""Loading: local folders, the offline hub cache, safetensors-only, clear errors."""

import json
import shutil

import pytest
import torch

import latentlib as ll
from latentlib.testing import save_tiny_model


def test_load_folder_defaults_to_cpu_float32(sd_dir):
    model = ll.load(sd_dir)
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    assert not model.is_sdxl and model.vae_scale_factor == 8 and model.default_size == (64, 64)
    assert type(model.unet).__name__ == "UNet2DConditionModel" and type(model.vae).__name__ == "AutoencoderKL"
    assert "SD, 64x64" in repr(model)
    assert model.unet.training is False


def test_load_sdxl_folder(sdxl_dir):
    model = ll.load(sdxl_dir)
    assert model.is_sdxl and model.text_encoder_2 is not None and model.embedding_shape == (77, 64)


def test_dtype_by_name(sd_dir):
    model = ll.load(sd_dir, dtype="bf16")
    assert model.dtype == torch.bfloat16 and model.unet.dtype == torch.bfloat16
    assert model.noise(0).dtype == torch.bfloat16


def test_device_auto_and_missing_cuda(sd_dir):
    auto = ll.load(sd_dir, device="auto")
    if torch.cuda.is_available():
        assert auto.device.type == "cuda" and auto.dtype == torch.float16
    else:
        assert auto.device.type in ("cpu", "mps")
        with pytest.raises(ValueError, match=r"`device` 'cuda' was asked for but CUDA is not available"):
            ll.load(sd_dir, device="cuda")
    with pytest.raises(ValueError, match=r"`device` 'gpu0' is not a device"):
        ll.load(sd_dir, device="gpu0")
    with pytest.raises(ValueError, match=r"`dtype` 'float8' is not known"):
        ll.load(sd_dir, dtype="float8")


def _fake_hub_cache(folder, repo_id: str) -> None:
    """Lay ``folder`` out in the local hub cache as huggingface_hub does (refs/main -> snapshots/<commit>)."""
    from pathlib import Path

    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / commit, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


def test_hub_id_loads_from_the_offline_cache(sd_dir):
    _fake_hub_cache(sd_dir, "latentlib-tests/tiny-sd")
    model = ll.load("latentlib-tests/tiny-sd")
    assert model.name == "latentlib-tests/tiny-sd"
    reference = ll.load(sd_dir)
    assert torch.equal(model.generate("a cat", steps=1, output="latent", progress=False),
                       reference.generate("a cat", steps=1, output="latent", progress=False))


def test_unknown_hub_id_offline_says_how_to_get_it():
    with pytest.raises(ll.ModelNotFoundError) as info:
        ll.load("nobody/not-a-model")
    message = str(info.value)
    assert "'nobody/not-a-model'" in message and "HF_HUB_OFFLINE=1" in message
    assert "network access" in message and "local diffusers folder" in message
    assert isinstance(info.value, ValueError)


def test_default_model_loads_without_a_name():
    model = ll.load()
    assert model.name == ll.load("shapes").name == "shapes" and model.unet.config.sample_size == 8


def test_pickle_only_weights_are_refused_unless_allowed(tmp_path, sd):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=sd.vae, unet=sd.unet, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, scheduler=sd.scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(tmp_path / "pickled", safe_serialization=False)
    with pytest.raises(ValueError, match=r"`vae` has only pickle weights \(diffusion_pytorch_model.bin\).*allow_pickle=True"):
        ll.load(tmp_path / "pickled")
    model = ll.load(tmp_path / "pickled", allow_pickle=True)
    torch.testing.assert_close(model.unet.conv_in.weight, sd.unet.conv_in.weight)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ValueError, match=r"is not a diffusers model folder: .*model_index.json is missing"):
        ll.load(tmp_path)
    with pytest.raises(ll.ModelNotFoundError, match=r"'./no/such/folder' is not a folder"):
        ll.load("./no/such/folder")


def test_unsupported_component_class_is_named(tmp_path):
    folder = save_tiny_model(tmp_path / "m")
    index = json.loads((folder / "model_index.json").read_text())
    index["unet"] = ["diffusers", "SD3Transformer2DModel"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"component `unet` is a SD3Transformer2DModel; latentlib supports UNet2DConditionModel"):
        ll.load(folder)


def test_missing_weights_are_named(tmp_path):
    folder = save_tiny_model(tmp_path / "m")
    for f in (folder / "vae").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(ValueError, match=r"`vae` has no weights \(\*.safetensors\)"):
        ll.load(folder)


def test_model_from_components_checks_they_belong_together():
    from latentlib.testing import tiny_sd_components, tiny_sdxl_components

    parts = tiny_sd_components()
    parts["unet"] = tiny_sdxl_components()["unet"]
    with pytest.raises(ValueError, match=r"cross_attention_dim is 64 but the text encoder\(s\) give 32"):
        ll.Model(**parts)
    parts = tiny_sd_components()
    del parts["tokenizer"]
    with pytest.raises(ValueError, match=r"each text encoder needs its tokenizer"):
        ll.Model(**parts)


def test_revision_is_for_hub_ids_only(sd_dir):
    with pytest.raises(ValueError, match=r"`revision` \('main'\) applies to hub ids"):
        ll.load(sd_dir, revision="main")


def test_variant_files_are_not_taken_for_plain_weights(tmp_path):
    folder = save_tiny_model(tmp_path / "m")
    for f in (folder / "unet").glob("*.safetensors"):
        f.rename(f.with_name(f.name.replace(".safetensors", ".fp16.safetensors")))
    with pytest.raises(ValueError, match=r"`unet` has no weights \(\*.safetensors\)"):
        ll.load(folder)


def test_hub_patterns_pick_only_the_files_we_load():
    from huggingface_hub.utils import filter_repo_objects

    from latentlib.model import _hub_patterns

    repo = [
        "model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt",
        "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.non_ema.safetensors",
        "text_encoder/model.safetensors", "text_encoder/model.fp16.safetensors", "text_encoder/pytorch_model.bin",
        "vae/diffusion_pytorch_model-00001-of-00002.safetensors", "vae/diffusion_pytorch_model.safetensors.index.json",
        "safety_checker/model.safetensors", "feature_extractor/preprocessor_config.json", "v1-5-pruned.ckpt",
    ]

    def pick(variant, allow_pickle):
        return set(filter_repo_objects(repo, allow_patterns=_hub_patterns(variant, allow_pickle)))

    plain = pick(None, False)
    assert plain == {
        "model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt",
        "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
        "vae/diffusion_pytorch_model-00001-of-00002.safetensors", "vae/diffusion_pytorch_model.safetensors.index.json",
    }
    fp16 = pick("fp16", False)
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in fp16 and "text_encoder/model.fp16.safetensors" in fp16
    assert "unet/diffusion_pytorch_model.safetensors" not in fp16
    assert {"unet/diffusion_pytorch_model.bin", "text_encoder/pytorch_model.bin"} <= pick(None, True)
    assert not any(f.startswith("safety_checker") or f.endswith(".ckpt") for f in pick(None, True))


def test_model_to_moves_and_casts(sd_dir):
    model = ll.load(sd_dir)
    model.to(dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and model.unet.dtype == torch.bfloat16
    assert model.vae.dtype == torch.bfloat16  # the tiny VAE is not marked force_upcast
    out = model.generate("a cat", steps=1, output="latent", progress=False)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_float16_vae_marked_force_upcast_runs_in_float32():
    from latentlib.testing import tiny_sd_components

    parts = tiny_sd_components()
    parts["vae"].register_to_config(force_upcast=True)
    parts["vae"].to(torch.float16)
    model = ll.Model(**parts)
    assert model.vae.dtype == torch.float32
