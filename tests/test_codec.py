"""encode/decode: input kinds, scaling read from the VAE config, batching, bad input."""

import numpy as np
import PIL.Image
import pytest
import torch

import latentlib as ll
from latentlib.testing import tiny_sd_components


def _as_uint8(images):
    return (images.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()


def test_input_kinds_agree(sd, images):
    arrays = _as_uint8(images)
    from_tensor = sd.encode(torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255)
    from_batch_array = sd.encode(arrays)
    from_list_arrays = sd.encode(list(arrays))
    from_pil = sd.encode([PIL.Image.fromarray(a) for a in arrays])
    from_one_pil = sd.encode(PIL.Image.fromarray(arrays[1]))
    assert from_tensor.shape == (3, 4, 8, 8)
    for other in (from_batch_array, from_list_arrays, from_pil):
        torch.testing.assert_close(other, from_tensor)
    torch.testing.assert_close(from_one_pil, from_tensor[1:2])


def test_encode_is_scaled_posterior_mean(sd, images):
    expected = sd.vae.encode(images * 2 - 1).latent_dist.mean * sd.vae.config.scaling_factor
    torch.testing.assert_close(sd.encode(images), expected)


def test_a_vae_stored_in_float8_computes_in_its_compute_dtype(images):
    """diffusers' layerwise casting stores the weights in float8 and computes in float32: the codec feeds the
    VAE what diffusers reports as its dtype, not the stored one, and matches the hooked VAE called directly."""
    parts = tiny_sd_components()
    vae = parts["vae"]
    vae.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    model = ll.Model(**parts)
    z = model.encode(images)
    torch.testing.assert_close(z, vae.encode(images * 2 - 1).latent_dist.mean * vae.config.scaling_factor)
    expected = (vae.decode(z / vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    torch.testing.assert_close(model.decode(z, output="pt"), expected)


def test_scaling_and_shift_are_read_from_the_config(images):
    parts = tiny_sd_components()
    parts["vae"].register_to_config(scaling_factor=0.5, shift_factor=0.25)
    model = ll.Model(**parts)
    mean = parts["vae"].encode(images * 2 - 1).latent_dist.mean
    z = model.encode(images)
    torch.testing.assert_close(z, (mean - 0.25) * 0.5)
    decoded = model.decode(z, output="pt")
    direct = (parts["vae"].decode(mean).sample / 2 + 0.5).clamp(0, 1)
    torch.testing.assert_close(decoded, direct, rtol=1e-4, atol=1e-5)


def test_per_channel_latent_statistics(images):
    parts = tiny_sd_components()
    mean_c, std_c = [0.1, -0.2, 0.3, 0.0], [1.5, 0.5, 2.0, 1.0]
    parts["vae"].register_to_config(scaling_factor=0.7, latents_mean=mean_c, latents_std=std_c)
    model = ll.Model(**parts)
    raw = parts["vae"].encode(images * 2 - 1).latent_dist.mean
    z = model.encode(images)
    expected = (raw - torch.tensor(mean_c).view(1, 4, 1, 1)) * 0.7 / torch.tensor(std_c).view(1, 4, 1, 1)
    torch.testing.assert_close(z, expected)


def test_batching_does_not_change_results(sd, images):
    many = torch.cat([images, images.flip(-1)])  # 6 images
    whole = sd.encode(many, batch_size=8)
    chunked = sd.encode(many, batch_size=4)
    torch.testing.assert_close(whole, chunked, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sd.decode(whole, output="pt", batch_size=2), sd.decode(whole, output="pt"),
                               rtol=1e-5, atol=1e-5)


def test_decode_outputs(sd, images):
    z = sd.encode(images)
    pil = sd.decode(z)
    arr = sd.decode(z, output="np")
    pt = sd.decode(z, output="pt")
    assert len(pil) == 3 and pil[0].size == (64, 64) and pil[0].mode == "RGB"
    assert arr.shape == (3, 64, 64, 3) and arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
    np.testing.assert_allclose(pt.permute(0, 2, 3, 1).numpy(), arr)
    np.testing.assert_array_equal(np.asarray(pil[2]), (arr[2] * 255).round().astype(np.uint8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_rounding_on_the_device_matches_the_hosts(sd, dtype, monkeypatch):
    """On a GPU, "pil" images are scaled to 8 bits on the device; here that route runs on the CPU and must give
    the bytes of the host's numpy route, ties and clamped values included."""
    from latentlib import codec

    image = torch.cat([torch.linspace(-1.2, 1.2, 3 * 16 * 16).view(1, 3, 16, 16),
                       torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1]).to(dtype)
    image[0, :, 0, 0] = 0.0  # exactly 0.5 after the shift: 127.5, a tie
    ties = [128]
    if dtype == torch.float32:  # (k + 0.5) / 255 for even k: half-to-even gives k, half-up would give k + 1
        k = torch.tensor([64.0, 100.0, 200.0, 254.0])
        image[0, 0, 1, :4] = ((k + 0.5) / 255) * 2 - 1
        assert torch.equal(codec._unit(image[0, 0, 1, :4]) * 255, k + 0.5)  # they are ties
        ties = [128, 64, 100, 200, 254]
    host = codec.pixels_to_output(codec._unit(image).float(), "pil")
    device = codec._to_uint8_hwc(image)
    assert device.dtype == torch.uint8 and device.shape == (2, 16, 16, 3)
    assert [device[0, 0, 0, 0].item()] + device[0, 1, :4, 0].tolist()[: len(ties) - 1] == ties
    for ours, theirs in zip(device.numpy(), host):
        np.testing.assert_array_equal(ours, np.asarray(theirs))
    z = sd.noise([1, 2])
    expected = [np.asarray(im) for im in sd.decode(z, batch_size=1)]
    made = [np.asarray(im) for im in sd.generate("a red circle", seed=[1, 2], steps=2, progress=False)]
    monkeypatch.setattr(codec, "_round_on_device", lambda device: True)
    rounded = []
    monkeypatch.setattr(codec, "_to_uint8_hwc", lambda image, f=codec._to_uint8_hwc: rounded.append(1) or f(image))
    for ours, theirs in zip(sd.decode(z, batch_size=1), expected):  # two chunks
        np.testing.assert_array_equal(np.asarray(ours), theirs)
    for ours, theirs in zip(sd.generate("a red circle", seed=[1, 2], steps=2, progress=False), made):
        np.testing.assert_array_equal(np.asarray(ours), theirs)
    assert len(rounded) == 3  # two chunks, one generation: all rounded on the "device"


def test_pil_output_rounds_as_numpy_does():
    """PIL frames are made in torch for speed; they equal numpy's float32 product rounded half to even,
    at the half-way values too, for a batch."""
    from latentlib.codec import pixels_to_output

    pixels = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    pixels[0, 0, 0, :6] = torch.tensor([0.5, 1.5, 2.5, 127.5, 254.5, 255.0]) / 255
    pixels[1, 2, 4, :2] = torch.tensor([0.0, 1.0])
    expected = (pixels.permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")
    images = pixels_to_output(pixels, "pil")
    assert len(images) == 2 and images[0].size == (7, 5) and images[0].mode == "RGB"
    assert all(np.array_equal(np.asarray(im), want) for im, want in zip(images, expected, strict=True))


def test_sampling_is_seeded(sd, images):
    mean = sd.encode(images[:1])
    a = sd.encode(images[:1], sample=True, generator=torch.Generator().manual_seed(0))
    b = sd.encode(images[:1], sample=True, generator=torch.Generator().manual_seed(0))
    c = sd.encode(images[:1], sample=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, mean)
    per_image = sd.encode(images[:2], sample=True, generator=[torch.Generator().manual_seed(s) for s in (0, 5)])
    torch.testing.assert_close(per_image[:1], a)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: torch.rand(1, 3, 60, 64), ValueError, r"64x60.*divisible by 8"),
        (lambda: np.zeros((64, 64, 4), np.uint8), ValueError, r"\(64, 64, 4\).*3 \(RGB\) channels"),
        (lambda: torch.rand(2, 1, 64, 64), ValueError, r"\(2, 1, 64, 64\).*3 \(RGB\)"),
        (lambda: PIL.Image.new("L", (64, 64)), ValueError, r"mode 'L'.*convert"),
        (lambda: PIL.Image.new("RGBA", (64, 64)), ValueError, r"mode 'RGBA'"),
        (lambda: torch.rand(1, 3, 64, 64) * 2 - 1, ValueError, r"values in \[-.*\[0, 1\]"),
        (lambda: torch.full((1, 3, 64, 64), float("nan")), ValueError, r"non-finite.*NaN"),
        (lambda: np.zeros((64, 64, 3), np.float32), TypeError, r"dtype float32.*uint8"),
        (lambda: torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, r"torch.uint8.*float"),
        (lambda: [np.zeros((64, 64, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)], ValueError, r"mixes image sizes"),
        (lambda: "cat.png", TypeError, r"`images` must be"),
        (lambda: [], TypeError, r"`images` must be"),
    ],
)
def test_encode_bad_input(sd, make, error, match):
    with pytest.raises(error, match=match):
        sd.encode(make())


@pytest.mark.parametrize(
    "latents, error, match",
    [
        (torch.zeros(1, 3, 8, 8), ValueError, r"\(1, 3, 8, 8\).*\(B, 4, h, w\)"),
        (torch.zeros(4, 8, 8), ValueError, r"\(4, 8, 8\)"),
        (torch.full((1, 4, 8, 8), float("inf")), ValueError, r"`latents` contains non-finite.*inf"),
        (np.zeros((1, 4, 8, 8), np.float32), TypeError, r"`latents` must be a torch.Tensor"),
    ],
)
def test_decode_bad_input(sd, latents, error, match):
    with pytest.raises(error, match=match):
        sd.decode(latents)


def test_decode_bad_output_name(sd):
    with pytest.raises(ValueError, match=r"`output` must be one of 'pil', 'pt', 'np'; got 'png'"):
        sd.decode(torch.zeros(1, 4, 8, 8), output="png")
