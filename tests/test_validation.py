"""Bad input to generate: each raises ValueError/TypeError naming the argument, the value and what is accepted."""

import pytest
import torch


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(height=60), ValueError, r"`height` must be divisible by 8.*got 60"),
        (dict(width=100), ValueError, r"`width` must be divisible by 8.*got 100"),
        (dict(latents=torch.zeros(1, 3, 8, 8)), ValueError, r"`latents` has shape \(1, 3, 8, 8\).*\(B, 4, h, w\)"),
        (dict(latents=torch.zeros(1, 4, 8, 8), height=128), ValueError,
         r"`latents` has shape \(1, 4, 8, 8\), i.e. 64x64 pixels, but height=128"),
        (dict(latents=torch.full((1, 4, 8, 8), float("nan"))), ValueError, r"`latents` contains non-finite.*NaN"),
        (dict(latents=torch.full((1, 4, 8, 8), float("inf"))), ValueError, r"`latents` contains non-finite.*inf"),
        (dict(scheduler="dpm++3m"), ValueError, r"`scheduler` 'dpm\+\+3m' is not known; use one of: default, ddim"),
        (dict(steps=0), ValueError, r"`steps` must be an integer >= 1, got 0"),
        (dict(steps=-3), ValueError, r"`steps` must be an integer >= 1, got -3"),
        (dict(steps=2.5), TypeError, r"`steps` must be an integer >= 1, got 2.5"),
        (dict(guidance=-1.0), ValueError, r"`guidance` must be >= 0.0, got -1.0"),
        (dict(guidance=float("nan")), ValueError, r"`guidance` must be a finite number"),
        (dict(image=torch.zeros(1, 4, 8, 8), strength=1.5), ValueError, r"`strength` must be in \[0.0, 1.0\], got 1.5"),
        (dict(image=torch.zeros(1, 4, 8, 8), strength=-0.1), ValueError, r"`strength` must be in \[0.0, 1.0\], got -0.1"),
        (dict(strength=0.5), ValueError, r"`strength` \(0.5\) only applies with an `image`"),
        (dict(image=torch.rand(1, 3, 60, 60)), ValueError, r"`image` is 60x60.*divisible by 8"),
        (dict(prompt=["a", "b"], latents=torch.zeros(3, 4, 8, 8)), ValueError,
         r"`prompt` has a batch of 2 but the latents/seeds has 3"),
        (dict(prompt="a", negative_prompt=["x", "y"], n=3, guidance=5.0), ValueError,
         r"`negative_prompt` has a batch of 2 but the latents/seeds has 3"),
        (dict(seed=-1), ValueError, r"`seed` must be in \[0, 2\*\*63 - 1 - n\], got -1"),
        (dict(seed="zero"), TypeError, r"`seed` must be an int or a non-empty list of ints, got 'zero'"),
        (dict(seed=[1, 2], n=3), ValueError, r"`n` is 3 but `seed` lists 2 seeds"),
        (dict(output="jpeg"), ValueError, r"`output` must be one of 'pil', 'pt', 'np', 'latent'; got 'jpeg'"),
        (dict(prompt=42), TypeError, r"`prompt` must be a string, a list of strings or a PromptEmbedding; got int"),
        (dict(callback=3), TypeError, r"`callback` must be callable, got int"),
        (dict(generators=torch.Generator()), TypeError, r"`generators` must be a list of torch.Generator.*got Generator"),
        (dict(generators=[torch.Generator(), torch.Generator()]), ValueError,
         r"`generators` lists 2 generators; the batch has 1 images"),
        (dict(generators=[3]), TypeError, r"`generators\[0\]` must be a CPU torch.Generator.*got 3"),
    ],
)
def test_generate_bad_input(sd, kwargs, error, match):
    kwargs = {"prompt": "a cat", "steps": 2, "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        sd.generate(**kwargs)


def test_embedding_from_another_model_is_refused(sd, sdxl):
    with pytest.raises(ValueError, match=r"`prompt` has token embeddings of shape \(1, 77, 64\); this model needs"):
        sd.generate(sdxl.embed("a cat"), steps=1, progress=False)


def test_callback_returning_wrong_latents_is_refused(sd):
    with pytest.raises(ValueError, match=r"the callback returned latents of shape \(2, 4, 8, 8\); expected \(1, 4, 8, 8\)"):
        sd.generate("a cat", steps=2, callback=lambda s: torch.zeros(2, 4, 8, 8), progress=False)
    with pytest.raises(ValueError, match=r"`callback's returned latents` contains non-finite values \(256 NaN"):
        sd.generate("a cat", steps=2, callback=lambda s: torch.full_like(s.latents, float("nan")), progress=False)


def test_noise_bad_input(sd):
    with pytest.raises(ValueError, match=r"`height` must be divisible by 8.*got 20"):
        sd.noise(0, height=20)
    with pytest.raises(ValueError, match=r"`n` must be an integer >= 1, got 0"):
        sd.noise(0, n=0)
