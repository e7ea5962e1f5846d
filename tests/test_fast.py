"""The fast path on CPU: every flag falls back cleanly, caches change nothing, reduced precision stays close."""

import warnings

import pytest
import torch

import latentlib as ll
from latentlib.fast import FastPath, load_preview_decoder
from latentlib.testing import run_in_threads, tiny_preview_decoder, tiny_sd_components, tiny_sdxl_components


@pytest.fixture
def model():
    return ll.Model(**tiny_sd_components())  # a fresh one: accelerate() changes the model in place


def _gen(m, **kw):
    kw = {"seed": 3, "steps": 4, "output": "pt", "progress": False, **kw}
    return m.generate("a red circle", **kw)


def test_auto_on_cpu_is_eager_with_caches_and_changes_no_pixel(model):
    before = _gen(model)
    fast = model.accelerate()
    assert isinstance(fast, FastPath) and model.fast is fast
    assert fast.report() == {"dtype": "float32", "sdpa": True, "channels_last": False, "compile": False,
                             "cuda_graphs": False, "fuse_qkv": False, "cudnn_benchmark": False, "cache": True,
                             "compile_cache": None, "autotune": "off", "static_shapes": False,
                             "attention": "auto", "inductor": {}, "notes": []}
    assert torch.equal(_gen(model), before)
    assert torch.equal(_gen(model), before)  # from the caches this time
    model.decelerate()
    assert model.fast is None and torch.equal(_gen(model), before)


def test_cuda_graphs_without_cuda_warns_and_runs_eagerly(model):
    before = _gen(model)
    with pytest.warns(RuntimeWarning, match="cuda_graphs=True needs a CUDA device; this model is on cpu"):
        fast = model.accelerate(cuda_graphs=True)
    assert fast.cuda_graphs is False and fast.notes == ["cuda_graphs: off (the model is on cpu, graphs need CUDA)"]
    assert torch.equal(_gen(model), before)


def test_prompt_cache_skips_the_text_encoder(model):
    calls = []
    model.text_encoder.register_forward_hook(lambda *a: calls.append(1))
    model.accelerate()
    _gen(model)
    _gen(model, seed=4)
    assert len(calls) == 2  # the prompt and the empty negative prompt, once each
    model.accelerate(cache=False)
    _gen(model)
    assert len(calls) == 4


@pytest.mark.parametrize("scheduler", ["euler-a", "dpm++2m-sde"])
def test_noise_cache_keeps_stochastic_samplers_exact(model, scheduler):
    """The cache restores the generators' state after the draw, so the sampler's own noise is unchanged."""
    before = [_gen(model, scheduler=scheduler, seed=[5, 6]) for _ in range(2)]
    assert torch.equal(before[0], before[1])
    model.accelerate()
    assert torch.equal(_gen(model, scheduler=scheduler, seed=[5, 6]), before[0])  # fills the cache
    assert torch.equal(_gen(model, scheduler=scheduler, seed=[5, 6]), before[0])  # served from it


@pytest.mark.parametrize("scheduler", ["default", "euler-a"])
def test_start_image_cache_keeps_image_to_image_exact(model, scheduler):
    """A start image's encoding is remembered with the generators' state after its draw: the same pixels and
    seeds skip the VAE encoder and give the uncached images exactly (a stochastic sampler included); other
    pixels or seeds encode again."""
    images = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    encodes = []
    encode = model.vae.encode
    model.vae.encode = lambda *a, **k: encodes.append(1) or encode(*a, **k)  # counts without hooking the encoder

    def img2img(image, seed):
        return _gen(model, image=image, strength=0.6, seed=seed, scheduler=scheduler)

    before = [img2img(images[0], 5), img2img(images[1], 5), img2img(images[0], [5, 6])]
    assert len(encodes) == 3
    model.accelerate()
    for _ in range(2):
        assert torch.equal(img2img(images[0], 5), before[0])
        assert torch.equal(img2img(images[1], 5), before[1])
        assert torch.equal(img2img(images[0], [5, 6]), before[2])
    assert len(encodes) == 3 + 3  # each image and seed list once
    assert torch.equal(img2img(images[0].clone(), 5), before[0]) and len(encodes) == 6  # by content, not identity
    model.fast.clear()  # e.g. after changing weights
    img2img(images[0], 5)
    assert len(encodes) == 7
    model.accelerate(cache=False)
    img2img(images[0], 5)
    img2img(images[0], 5)
    assert len(encodes) == 9


def test_start_image_cache_steps_aside_for_encoder_hooks(model):
    """A hook on the VAE's encoder must see every encoding (as hooks on the UNet and decoder make them run
    eagerly): with one, the start image is encoded on every call; removed, the cache serves again."""
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    model.accelerate()
    seen = []
    handle = model.vae.encoder.register_forward_hook(lambda *a: seen.append(1))
    first = _gen(model, image=image, strength=0.6, seed=5)
    assert torch.equal(_gen(model, image=image, strength=0.6, seed=5), first) and len(seen) == 2
    handle.remove()
    _gen(model, image=image, strength=0.6, seed=5)
    assert torch.equal(_gen(model, image=image, strength=0.6, seed=5), first) and len(seen) == 2


def test_start_image_cache_hashes_one_image_for_a_batch(model):
    """One start image for several seeds is hashed before it is repeated, and the batch is part of the key."""
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    expected = {n: _gen(model, image=image, strength=0.6, seed=list(range(5, 5 + n))) for n in (1, 3)}
    model.accelerate()
    for _ in range(2):
        for n in (1, 3):
            assert torch.equal(_gen(model, image=image, strength=0.6, seed=list(range(5, 5 + n))), expected[n])
    assert [key[1:3] for key in model.fast._starts] == [((1, 3, 64, 64), 1), ((1, 3, 64, 64), 3)]


def test_the_fast_unet_serves_plain_runs_only(model):
    """A compiled or graphed UNet cannot run hooks, so h-space edits and hooked UNets go eager."""
    from types import SimpleNamespace

    model.accelerate()
    seen = []

    def runner(sample, t, text, timestep_cond=None, added=None):
        seen.append(sample.shape[0])
        return model.unet(sample, t, encoder_hidden_states=text, return_dict=False)[0]

    model.fast._unet = runner
    plain = _gen(model)
    assert seen == [2] * 4
    model.decelerate()
    assert torch.equal(_gen(model), plain)
    model.accelerate()
    model.fast._unet = runner
    seen.clear()
    shapes = []
    handle = model.unet.mid_block.register_forward_hook(lambda m, a, out: shapes.append(out.shape[1:]))
    _gen(model, steps=1)
    handle.remove()
    seen.clear()
    _gen(model, steps=1)
    assert seen == [2]  # hook gone: fast again
    seen.clear()
    h_edit = SimpleNamespace(space="h", vector=torch.ones(shapes[0]))
    _gen(model, edits=[(h_edit, 1.0)])
    handle = model.unet.down_blocks[0].register_forward_hook(lambda *a: None)
    _gen(model)
    handle.remove()
    assert seen == []


def test_global_module_hooks_send_the_unet_eager(model):
    """Hooks registered for every module (torch.nn.modules.module.register_module_forward_hook) count too."""
    from torch.nn.modules.module import register_module_forward_hook

    model.accelerate()
    seen = []
    model.fast._unet = lambda sample, *a, **k: seen.append(1) or torch.zeros_like(sample)
    _gen(model, steps=1)
    assert seen == [1]
    calls = []
    handle = register_module_forward_hook(lambda *a: calls.append(1))
    try:
        _gen(model, steps=1)
    finally:
        handle.remove()
    assert seen == [1] and calls  # the eager UNet ran, with the hook
    _gen(model, steps=1)
    assert seen == [1, 1]


def test_a_hooked_decoder_decodes_eagerly(model):
    """The fast path's decoder (compiled or graphed) would skip a hook on the VAE: with one, the eager decoder
    runs and the hook sees it; without, the fast one again."""
    model.accelerate()
    used = []

    def fast_decode(z):
        used.append(1)
        return model.vae.decode(z, return_dict=False)[0]

    model.fast._decode["full"] = fast_decode
    plain = _gen(model, steps=1)
    assert used == [1]
    seen = []
    handle = model.vae.decoder.register_forward_hook(lambda *a: seen.append(1))
    try:
        hooked = _gen(model, steps=1)
    finally:
        handle.remove()
    assert used == [1] and seen == [1] and torch.equal(hooked, plain)
    _gen(model, steps=1)
    assert used == [1, 1]


def test_diffusers_hooks_send_the_unet_and_decoder_eager(model):
    """diffusers' hooks (layerwise casting, group offloading, caches) and accelerate's (CPU offload) replace a
    module's ``forward`` instead of registering torch hooks, and need their Python to run on every call: a
    compiled or graphed network would skip it. Applied after frames have run, they still send both eager."""
    model.accelerate()
    seen = []
    model.fast._unet = lambda sample, *a, **k: seen.append("unet") or torch.zeros_like(sample)
    model.fast._decode["full"] = lambda z: seen.append("decode") or torch.zeros(z.shape[0], 3, 64, 64)
    _gen(model, steps=1)
    assert seen == ["unet", "decode"]
    for net in (model.unet, model.vae):
        net.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    hooked = _gen(model, steps=1)
    assert seen == ["unet", "decode"]  # neither stand-in ran
    model.decelerate()
    assert torch.equal(hooked, _gen(model, steps=1))  # what the eager, hooked model makes


def test_a_removed_diffusers_hook_gives_the_fast_unet_back(model):
    """Removing a diffusers hook puts the module's own bound forward back as an instance attribute: that is not a
    hook, so the fast UNet serves again."""
    from diffusers.hooks import HookRegistry, ModelHook

    model.accelerate()
    seen = []
    model.fast._unet = lambda sample, *a, **k: seen.append(1) or torch.zeros_like(sample)
    registry = HookRegistry.check_if_exists_or_initialize(model.unet.mid_block)
    registry.register_hook(ModelHook(), "probe")
    _gen(model, steps=1)
    assert seen == []
    registry.remove_hook("probe")
    assert "forward" in vars(model.unet.mid_block)  # diffusers left the bound method behind
    _gen(model, steps=1)
    assert seen == [1]


def test_accelerate_forgets_the_hook_walk(model):
    """A module put into the UNet after a frame ran is not in the list of modules the hook check made then;
    accelerate() again, as after any change to the UNet, lists the UNet's modules anew."""
    extra = torch.nn.Identity()
    extra.register_forward_hook(lambda *a: None)
    model.accelerate()
    seen = []

    def runner(sample, *a, **k):
        seen.append(1)
        return torch.zeros_like(sample)

    model.fast._unet = runner
    _gen(model, steps=1)
    model.unet.add_module("probe_extra", extra)
    model.accelerate()
    model.fast._unet = runner
    _gen(model, steps=1)
    assert seen == [1]  # the second run found the hooked module and went eager


def test_compile_on_cpu_matches_eager(model):
    """torch.compile works on CPU too (it is off by default there); its images match eager's."""
    before = _gen(model, steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fast = model.accelerate(compile=True, compile_cache=None)
        after = _gen(model, steps=2)
    assert fast.compile and fast.compile_cache
    report = fast.report()
    assert report["compile"] or any("runs eagerly" in note for note in report["notes"])  # no compiler: said so
    assert (after - before).abs().max() < 1e-4


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reduced_precision_stays_within_its_tolerance(model, dtype):
    before = _gen(model)
    fast = model.accelerate(dtype=dtype)
    assert fast.dtype == dtype and model.unet.dtype == getattr(torch, dtype)
    after = _gen(model)
    assert after.dtype == torch.float32
    tolerance = 0.05 if dtype == "bfloat16" else 0.01  # of the [0, 1] pixel range; bf16 keeps 8 bits
    assert (after - before).abs().max() < tolerance, (after - before).abs().max()


def test_channels_last_matches(model):
    before = _gen(model)
    model.accelerate(channels_last=True)
    assert model.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.vae.encoder.conv_in.weight.is_contiguous()  # not compiled: NHWC would only slow it
    assert (_gen(model) - before).abs().max() < 1e-5


def test_eager_layout_on_cpu_and_back_after_decelerate(model):
    """On the CPU the eager VAE decoder is channels-last (oneDNN's fast convolutions), the encoder and
    the UNet contiguous; decelerate() brings that layout back after the fast path changed it."""
    def layout():
        return (model.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last),
                model.vae.post_quant_conv.weight.is_contiguous(memory_format=torch.channels_last),
                model.vae.encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last),
                model.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last))

    assert layout() == (True, True, False, False)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mine = ll.codec.decode_latents(model.vae, latents)
        model.vae.decoder.to(memory_format=torch.contiguous_format)
        model.vae.post_quant_conv.to(memory_format=torch.contiguous_format)
        contiguous = ll.codec.decode_latents(model.vae, latents)
    assert (mine - contiguous).abs().max() < 1e-5  # same images, another convolution order
    assert mine.is_contiguous()  # callers get row-major pixels whatever layout the decoder ran in
    from latentlib.export import weights_sha256

    hash_contiguous = weights_sha256(model)
    del model._weights_sha256
    model._eager_layout()
    assert weights_sha256(model) == hash_contiguous  # the layout is not part of the weights' identity
    model.accelerate(channels_last=True)
    assert layout() == (True, True, False, True)
    model.decelerate()
    assert layout() == (True, True, False, False)
    model.accelerate(channels_last=False)
    assert layout() == (True, True, False, False)  # "off" keeps the eager layout, it does not slow the decoder


def test_fused_qkv_matches_and_decelerate_unfuses(model):
    """diffusers' fused q/k/v projections give the same image; turning the fast path off restores the
    unfused attention, and a second accelerate() fuses the current weights again."""
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

    from latentlib.directions import weight_hash

    before, hash_before = _gen(model), weight_hash(model)
    fast = model.accelerate(fuse_qkv=True)
    assert fast.fuse_qkv and any(isinstance(p, FusedAttnProcessor2_0) for p in model.unet.attn_processors.values())
    assert (_gen(model) - before).abs().max() < 1e-5
    assert weight_hash(model) == hash_before  # caches and banks see the same weights, fused or not
    assert not any(p.requires_grad for p in model.unet.parameters())
    model.set_preview_decoder(tiny_preview_decoder())  # re-applies the fast path with the same flags
    assert model.fast.fuse_qkv
    model.decelerate()
    assert not any(isinstance(p, FusedAttnProcessor2_0) for p in model.unet.attn_processors.values())
    assert not any(hasattr(m, "to_qkv") for m in model.unet.modules())
    assert torch.equal(_gen(model), before)
    model.accelerate(fuse_qkv=True)
    with torch.no_grad():  # weights changed after a fusion: accelerate() again uses the new ones
        for m in model.unet.modules():
            if hasattr(m, "to_q"):
                m.to_q.weight.mul_(1.5)
    model.accelerate(fuse_qkv=True)
    changed = _gen(model)
    model.decelerate()
    assert (changed - _gen(model)).abs().max() < 1e-5 and not torch.equal(changed, before)


def test_cudnn_benchmark_needs_cuda_and_is_left_as_found(model):
    import torch.backends.cudnn as cudnn

    found = cudnn.benchmark
    try:
        for setting in (True, False):
            cudnn.benchmark = setting
            fast = model.accelerate(cudnn_benchmark=True)
            assert fast.cudnn_benchmark is False and any("cudnn_benchmark: off" in n for n in fast.notes)
            model.decelerate()
            assert cudnn.benchmark is setting
    finally:
        cudnn.benchmark = found


def test_preview_decoder(model, tmp_path):
    full = _gen(model)
    assert torch.equal(_gen(model, decoder="preview"), full)  # none set: the full VAE, as documented
    tiny = tiny_preview_decoder()
    tiny.save_pretrained(tmp_path / "taesd")
    model.set_preview_decoder(tmp_path / "taesd")
    preview = _gen(model, decoder="preview")
    assert preview.shape == full.shape and not torch.equal(preview, full)
    assert torch.equal(_gen(model), full)
    model.accelerate()
    assert torch.equal(_gen(model, decoder="preview"), preview)
    model.set_preview_decoder(None)
    assert torch.equal(_gen(model, decoder="preview"), full)


def test_bad_input_is_named(model, tmp_path):
    with pytest.raises(TypeError, match=r"`compile` must be True, False or 'auto', got 'yes'"):
        model.accelerate(compile="yes")
    with pytest.raises(TypeError, match=r"`cache` must be True or False, got 1"):
        model.accelerate(cache=1)
    with pytest.raises(ValueError, match=r"`decoder` must be one of 'full', 'preview'; got 'tiny'"):
        _gen(model, decoder="tiny")
    with pytest.raises(FileNotFoundError, match=r"`folder` '.*nowhere' is not an AutoencoderTiny folder"):
        load_preview_decoder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"`decoder` takes 8-channel latents; this model's have 4"):
        model.set_preview_decoder(tiny_preview_decoder(latent_channels=8))


@pytest.mark.parametrize("space", ["xT", "prompt", "h"])
def test_sweep_equals_one_call_per_frame(model, space):
    """A batched sweep gives the frames that one generate call per strength gives."""
    from types import SimpleNamespace

    if space == "xT":
        vector = torch.randn(model.noise(0).shape[1:], generator=torch.Generator().manual_seed(0))
    elif space == "prompt":
        vector = torch.randn(model.embedding_shape[-1], generator=torch.Generator().manual_seed(0))
    else:
        shapes = []
        handle = model.unet.mid_block.register_forward_hook(lambda m, a, out: shapes.append(out.shape[1:]))
        _gen(model, steps=1)
        handle.remove()
        vector = torch.randn(shapes[0], generator=torch.Generator().manual_seed(0))
    direction = SimpleNamespace(space=space, vector=vector / vector.norm(), scale=2.0)
    strengths = [-3.0, 0.0, 1.5, 3.0, 4.0]
    frames = model.sweep("a red circle", direction, strengths, seed=7, steps=3, batch_size=2, output="pt",
                         progress=False)
    one_by_one = torch.cat([model.generate("a red circle", seed=7, steps=3, edits=[(direction, s)], output="pt",
                                           progress=False) for s in strengths])
    assert frames.shape == one_by_one.shape == (5, 3, 64, 64)
    assert (frames - one_by_one).abs().max() < 1e-4
    assert (frames[0] - frames[-1]).abs().max() > 1e-3  # the direction does move the image


def test_sweep_bad_input(model):
    from types import SimpleNamespace

    direction = SimpleNamespace(space="xT", vector=torch.ones(4, 8, 8))
    with pytest.raises(ValueError, match=r"`strengths` is empty"):
        model.sweep("a", direction, [])
    with pytest.raises(ValueError, match=r"`latents` cannot be given to sweep"):
        model.sweep("a", direction, [1.0], latents=model.noise(0))
    with pytest.raises(TypeError, match=r"`seed` must be one int"):
        model.sweep("a", direction, [1.0], seed=[1, 2])
    with pytest.raises(ValueError, match=r"has space 'w'"):
        model.sweep("a", SimpleNamespace(space="w", vector=torch.ones(3)), [1.0])


def test_image_to_image_from_pixels_is_not_served_stale_noise(model):
    """Encoding pixels draws from the seed's generator first, so its noise must not come from the cache."""
    from latentlib import shapes

    image = shapes.render(shapes.sample_scene(0, "test"))
    eager = _gen(model, image=image, strength=0.6)
    model.accelerate()
    _gen(model)  # text-to-image with the same seed fills the noise cache
    assert torch.equal(_gen(model, image=image, strength=0.6), eager)


def test_a_failed_compile_runs_eagerly_and_says_so(model, monkeypatch):
    def broken_compile(fn, **kwargs):
        def call(*args):
            raise RuntimeError("no C++ compiler found")

        return call

    before = _gen(model)
    monkeypatch.setattr(torch, "compile", broken_compile)
    model.accelerate(compile=True)
    with pytest.warns(RuntimeWarning, match=r"torch.compile of the UNet failed \(RuntimeError: no C\+\+ compiler"):
        after = _gen(model)
    assert torch.equal(after, before)
    report = model.fast.report()
    assert report["compile"] is False
    assert "compile: the UNet runs eagerly (RuntimeError: no C++ compiler found)" in report["notes"]


def test_clear_empties_every_runners_graphs(model):
    """clear() reaches the graphs of the UNet's runners and the decoders' (the CUDA-free parts of it)."""
    from latentlib.fast import _Graphed, _UNetRunner

    fast = model.accelerate()
    fast._unet = _UNetRunner(model.unet, compile=False, cuda_graphs=False)
    graphed = _Graphed(lambda *a: None)
    graphed.graphs["key"] = "captured"
    fast._unet.runners[()] = graphed
    fast._decode["full"] = decoder_graphs = _Graphed(lambda *a: None)
    decoder_graphs.graphs["key"] = "captured"
    fast.clear()
    assert graphed.graphs == {} and decoder_graphs.graphs == {}


@pytest.mark.parametrize("autotune, arguments", [("off", {}),
                                                 ("coordinate-descent", {"options": {"coordinate_descent_tuning": True}}),
                                                 ("max-autotune", {"mode": "max-autotune-no-cudagraphs"})])
def test_autotune_reaches_torch_compile_and_changes_no_pixel(model, monkeypatch, autotune, arguments):
    """Each ``autotune`` value becomes torch.compile's arguments for the UNet and the decoder (recorded here
    rather than compiled: max-autotune on CPU would take minutes); the images are the eager ones."""
    calls = []

    def recording_compile(fn, **kwargs):
        calls.append(kwargs)
        return fn

    before = _gen(model, steps=2)
    monkeypatch.setattr(torch, "compile", recording_compile)
    fast = model.accelerate(compile=True, autotune=autotune)
    after = _gen(model, steps=2)
    assert calls and all(call == arguments for call in calls) and len(calls) >= 2  # UNet and decoder
    assert fast.report()["autotune"] == autotune and torch.equal(after, before)


def test_a_preview_decoder_set_later_keeps_the_autotune_and_static_shapes(model, monkeypatch):
    """set_preview_decoder re-applies the fast path with its flags; the kernel tuning and static shapes are
    among them."""
    calls = []

    def recording_compile(fn, **kwargs):
        calls.append(kwargs)
        return fn

    monkeypatch.setattr(torch, "compile", recording_compile)
    model.accelerate(compile=True, autotune="coordinate-descent", static_shapes=True)
    calls.clear()
    model.set_preview_decoder(tiny_preview_decoder())
    assert model.fast.report()["autotune"] == "coordinate-descent" and model.fast.report()["static_shapes"] is True
    assert calls and all(call == {"dynamic": False, "options": {"coordinate_descent_tuning": True}} for call in calls)


def test_static_shapes_reach_torch_compile_and_need_compile(model, monkeypatch):
    """static_shapes=True compiles with dynamic=False (UNet and decoder), changes no pixel, and without compile
    is off with a note; it takes a bool."""
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: calls.append(kwargs) or fn)
    before = _gen(model, steps=2)
    fast = model.accelerate(compile=True, static_shapes=True)
    assert torch.equal(_gen(model, steps=2), before)
    assert len(calls) >= 2 and all(call == {"dynamic": False} for call in calls) and fast.static_shapes
    calls.clear()
    model.accelerate(compile=True)
    _gen(model, steps=2)
    assert calls and all(call == {} for call in calls)  # the default: automatic dynamic shapes
    fast = model.accelerate(compile=False, static_shapes=True)
    assert fast.static_shapes is False and "static_shapes: off (it shapes compiled graphs, and compile is off)" \
        in fast.notes
    with pytest.raises(TypeError, match=r"`static_shapes` must be True or False, got 'yes'"):
        model.accelerate(static_shapes="yes")


def _spy_on_attention(monkeypatch) -> list:
    """Record PyTorch's SDPA priority order (backend names) at every attention call the UNet makes."""
    from torch.nn.attention import SDPBackend

    names = {int(b): name for name, b in SDPBackend.__members__.items() if name not in ("ERROR", "OVERRIDEABLE")}
    orders, real = [], torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        orders.append([names[i] for i in torch._C._get_sdp_priority_order() if i in names])
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    return orders


def test_attention_puts_its_kernel_first_for_the_fast_unet_only(model, monkeypatch):
    """A UNet runner with attention="math" calls the UNet with MATH first in SDPA's priority, then the others in
    PyTorch's order; outside the UNet call the order is PyTorch's again. accelerate() builds such runners on CUDA
    only, so here the runner is set by hand (the CPU's attention ignores the order: same pixels)."""
    from latentlib.fast import _UNetRunner

    before = _gen(model, steps=2)
    orders = _spy_on_attention(monkeypatch)
    _gen(model, steps=2)
    default = orders[0]
    assert default[0] == "FLASH_ATTENTION" and all(order == default for order in orders)
    orders.clear()
    model.accelerate()
    model.fast._unet = _UNetRunner(model.unet, compile=False, cuda_graphs=False, attention="math")
    after = _gen(model, steps=2)
    unet_calls = [order for order in orders if order[0] == "MATH"]
    assert unet_calls and unet_calls[0] == ["MATH", *[name for name in default if name != "MATH"]]
    from diffusers.models.attention_processor import Attention

    layers = sum(isinstance(m, Attention) for m in model.unet.modules())
    assert len(unet_calls) == 2 * layers  # two steps, each one UNet call (CFG batched)
    assert all(order == default for order in orders if order[0] != "MATH")  # text encoder and VAE: PyTorch's order
    assert torch.equal(after, before)
    assert torch._C._get_sdp_priority_order()[0] == int(torch.nn.attention.SDPBackend.FLASH_ATTENTION)


def test_the_attention_order_is_traced_into_the_compiled_unet(model):
    """Dynamo traces the runner's sdpa_kernel context into the UNet's graph, without a graph break, so the kernel
    choice is part of the compiled graph, its guards and its cache key, not global state set around a call."""
    from latentlib.fast import _attention_order, _unet_fn

    x, t, text = model.noise(0, n=2), torch.tensor(500), model.embed(["a", "b"]).embeds
    graphs = {}
    for attention in ("auto", "cudnn"):
        order = None if attention == "auto" else _attention_order(attention)
        torch._dynamo.reset()
        explained = torch._dynamo.explain(_unet_fn(model.unet, (), order))(x, t, text)
        assert explained.graph_count == 1 and explained.graph_break_count == 0
        graphs[attention] = [str(getattr(n.target, "__name__", n.target)) for n in explained.graphs[0].graph.nodes]
    torch._dynamo.reset()
    assert "_sdpa_kernel" not in graphs["auto"] and "_sdpa_kernel" in graphs["cudnn"]


@pytest.mark.parametrize("kernel", ["cudnn", "flash", "efficient", "math"])
def test_attention_needs_cuda_and_sdpa(model, kernel):
    fast = model.accelerate(attention=kernel)
    assert fast.attention == "auto" and fast._unet is None and fast.report()["attention"] == "auto"
    assert fast.notes == ["attention: auto (the model is on cpu; PyTorch orders attention kernels on CUDA only)"]
    fast = model.accelerate(sdpa=False, attention=kernel)
    assert fast.attention == "auto" and \
        fast.notes == [f"attention: auto ({kernel!r} is a scaled-dot-product attention kernel, and sdpa is off)"]


def test_attention_is_checked(model):
    with pytest.raises(ValueError, match=r"`attention` must be one of 'auto', 'cudnn', 'flash', 'efficient', "
                                         r"'math', got 'xformers'"):
        model.accelerate(attention="xformers")


def test_a_preview_decoder_set_later_keeps_the_attention_kernel(model, monkeypatch):
    """set_preview_decoder re-applies the arguments accelerate was asked for (here "cudnn", which the CPU turns
    into "auto" with a note, again)."""
    import latentlib.fast

    model.accelerate(attention="cudnn")
    calls, real = [], latentlib.fast.accelerate
    monkeypatch.setattr(latentlib.fast, "accelerate", lambda m, **kw: calls.append(kw) or real(m, **kw))
    model.set_preview_decoder(tiny_preview_decoder())
    assert [call["attention"] for call in calls] == ["cudnn"]
    assert model.fast.notes == ["attention: auto (the model is on cpu; PyTorch orders attention kernels on CUDA only)"]


def test_a_bad_argument_leaves_the_model_as_it_was(model):
    """accelerate checks every argument before it converts the model."""
    for bad in ({"dtype": "bfloat16", "attention": "Flash"}, {"dtype": "bfloat16", "static_shapes": "yes"},
                {"dtype": "float64"}):
        with pytest.raises((ValueError, TypeError)):
            model.accelerate(**bad)
        assert model.unet.dtype == torch.float32 and model.dtype == torch.float32 and model.fast is None


def test_a_dtype_change_re_applies_the_fast_path(model):
    """model.to(dtype=...) after accelerate() applies the fast path again with the arguments it was asked for:
    the report follows the model, and the old caches go with the old fast path."""
    model.accelerate(autotune="coordinate-descent")
    old = model.fast
    _gen(model, steps=1)
    assert old._prompts
    model.to(dtype=torch.bfloat16)
    assert model.fast is not old and model.fast.dtype == "bfloat16" and model.fast.report()["dtype"] == "bfloat16"
    assert model.fast._asked["autotune"] == "coordinate-descent" and not model.fast._prompts
    assert _gen(model, steps=1).shape == (1, 3, 64, 64)
    model.to(dtype=torch.bfloat16)  # no change: the same fast path
    assert model.fast._asked["dtype"] == torch.bfloat16


def test_an_explicit_compile_cache_wins_over_the_environment(model, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "from-env"))
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    fast = model.accelerate(compile=True, compile_cache=tmp_path / "mine")
    assert fast.compile_cache == str(tmp_path / "mine") and (tmp_path / "mine").is_dir()
    fast = model.accelerate(compile=True)  # none given: the environment's (as it is now) is used
    assert fast.compile_cache == str(tmp_path / "mine")


def test_a_failing_compiled_call_turns_compile_off_only_when_eager_succeeds(monkeypatch):
    """A compiler failure falls back to eager (with a warning) for good; an error the eager call makes too is the
    call's own (bad input): it is raised and compile stays on."""
    from latentlib.fast import _Compiled

    def broken_compiled(*args):
        raise RuntimeError("Inductor could not lower this")

    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: broken_compiled)
    runner = _Compiled(lambda x: x * 2, "UNet")
    with pytest.warns(RuntimeWarning, match="torch.compile of the UNet failed"):
        assert runner(torch.ones(1)).item() == 2
    assert runner.error == "RuntimeError: Inductor could not lower this"

    def strict(x):
        raise ValueError("bad input shape")

    runner = _Compiled(strict, "UNet")
    with pytest.raises(ValueError, match="bad input shape"):
        runner(torch.ones(1))
    assert runner.error is None  # still compiled: the failure was the input's
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: lambda *a: (_ for _ in ()).throw(torch.OutOfMemoryError()))
    runner = _Compiled(lambda x: x, "UNet")
    with pytest.raises(torch.OutOfMemoryError):
        runner(torch.ones(1))
    assert runner.error is None


def test_graphs_step_aside_for_tensors_off_the_gpu():
    """A graph runner called with CPU tensors (a model moved off the GPU) runs the function, capturing nothing."""
    from latentlib.fast import _Graphed

    runner = _Graphed(lambda x: x + 1)
    assert runner(torch.zeros(2)).tolist() == [1.0, 1.0] and runner.graphs == {}


def test_the_caches_are_safe_between_threads(model):
    """Threads filling and evicting one small cache at once: no KeyError, every value right. The store pauses in
    its membership test, so without the lock another thread evicts the key before it is moved to the end."""
    import time
    from collections import OrderedDict

    class Slow(OrderedDict):
        def __contains__(self, key):
            found = super().__contains__(key)
            time.sleep(0.002)
            return found

    fast = model.accelerate()
    fast.cache_size, fast._noise = 4, Slow()

    def work(offset):
        for i in range(200):
            key = (offset + i) % 6
            assert fast.cached_noise(key, lambda key=key: key * 10) == key * 10

    assert run_in_threads(work, 8) == [] and len(fast._noise) <= 4


def test_autotune_needs_compile_and_is_checked(model):
    fast = model.accelerate(compile=False, autotune="max-autotune")
    assert fast.autotune == "off" and any(note.startswith("autotune: off ('max-autotune' tunes compiled kernels")
                                          for note in fast.notes)
    with pytest.raises(ValueError, match=r"`autotune` must be one of 'off', 'coordinate-descent', 'max-autotune', "
                                         r"got 'fast'"):
        model.accelerate(autotune="fast")


def _record_compiled_signatures(monkeypatch) -> set:
    """torch.compile replaced by a recorder: each "compiled" function notes itself with the shapes and dtypes it is
    called with (what a real compile, or a CUDA graph, would specialise on) and runs eagerly."""
    seen = set()

    def recording_compile(fn, **kwargs):
        def compiled(*args):
            seen.add((fn, *((tuple(a.shape), a.dtype) for a in args if torch.is_tensor(a))))
            return fn(*args)

        return compiled

    monkeypatch.setattr(torch, "compile", recording_compile)
    return seen


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_warm_up_meets_every_shape_the_frames_then_use(monkeypatch, kind):
    """warm_up runs each UNet batch (n images, twice that with guidance) and each decoder on n images through the
    fast path's own compiled runners; frames made afterwards at those settings bring no new shape."""
    model = ll.Model(**(tiny_sdxl_components() if kind == "sdxl" else tiny_sd_components()))
    model.set_preview_decoder(tiny_preview_decoder())
    seen = _record_compiled_signatures(monkeypatch)
    model.accelerate(compile=True)
    seconds = model.warm_up(n=[1, 2], progress=False)
    assert list(seconds) == ["UNet batch 1 at 64x64", "UNet batch 2 at 64x64", "UNet batch 4 at 64x64",
                             "full decoder, 1 image at 64x64", "preview decoder, 1 image at 64x64",
                             "full decoder, 2 images at 64x64", "preview decoder, 2 images at 64x64"]
    assert all(isinstance(s, float) and s >= 0 for s in seconds.values())
    assert {sig[1][0][0] for sig in seen if len(sig) >= 4} == {1, 2, 4}  # the UNet's (sample, t, text, ...)
    warmed = set(seen)
    seen.clear()
    for n, guidance, decoder, scheduler in [(1, 0.0, "preview", "default"), (1, 5.0, "full", "euler"),
                                            (2, 7.5, "preview", "heun"), (2, 0.0, "full", "dpm++2m")]:
        model.generate("a red circle", n=n, seed=5, steps=3, guidance=guidance, decoder=decoder, scheduler=scheduler,
                       progress=False)
    assert seen and seen <= warmed  # float (Euler, Heun) and integer (DDIM, DPM++) timesteps share the graphs
    model.generate("a red circle", n=3, seed=5, steps=1, guidance=0.0, progress=False)
    assert not seen <= warmed  # the check can fail: three images are a shape not warmed up


def test_warm_up_of_an_inpainting_model_warms_its_decoders_only():
    """The fast UNet does not serve an inpainting UNet (its mask inputs): warm_up does not run it (text-to-image
    would refuse its channels) and warms the decoders."""
    model = ll.Model(**tiny_sd_components(in_channels=9))
    model.accelerate()
    assert list(model.warm_up(progress=False)) == ["full decoder, 1 image at 64x64"]


def test_warm_up_names_bad_input(model):
    with pytest.raises(RuntimeError, match=r"call model.accelerate\(\) first"):
        model.warm_up()
    model.accelerate()
    for bad, error, message in [({"n": 0}, ValueError, "`n` must be an integer >= 1, got 0"),
                                ({"n": [1, 2.5]}, TypeError, r"`n` must be an integer >= 1, got 2.5"),
                                ({"n": []}, TypeError, r"`n` must be an int >= 1 or a non-empty list"),
                                ({"cfg": "yes"}, TypeError, r"`cfg` True, False or a non-empty list.*cfg='yes'"),
                                ({"decoders": "tiny"}, ValueError, "`decoders` must be one of 'full', 'preview'"),
                                ({"decoders": 5}, TypeError, "`decoders` must be 'full', 'preview' or a non-empty list"),
                                ({"decode_batch_size": 0}, ValueError, "`decode_batch_size` must be an integer >= 1"),
                                ({"progress": "yes"}, TypeError, "`progress` must be True or False, got 'yes'"),
                                ({"width": 60}, ValueError, "`width` must be divisible by 8")]:
        with pytest.raises(error, match=message):
            model.warm_up(**{"progress": False, **bad})
    assert model.warm_up(cfg=False, decoders="preview", progress=False).keys() == {
        "UNet batch 1 at 64x64", "full decoder, 1 image at 64x64"}  # no preview decoder set: "preview" is the VAE


def test_inductor_options_reach_torch_compile_with_the_tuning(model, monkeypatch):
    """``inductor`` adds Inductor options to the UNet's and decoder's compiles; with a tuning mode, the mode becomes
    its options (torch.compile takes one or the other); it is re-applied with the rest (set_preview_decoder), off
    with a note without compile, and checked against torch._inductor.config."""
    from torch._inductor import list_mode_options

    calls, real_compile = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: calls.append(kwargs) or fn)
    before = _gen(model, steps=2)
    fast = model.accelerate(compile=True, inductor={"combo_kernels": True})
    assert torch.equal(_gen(model, steps=2), before) and fast.report()["inductor"] == {"combo_kernels": True}
    assert len(calls) >= 2 and all(call == {"options": {"combo_kernels": True}} for call in calls)
    calls.clear()
    model.accelerate(compile=True, autotune="max-autotune", static_shapes=True, inductor={"combo_kernels": True})
    assert calls and all(call == {"dynamic": False, "options": {**list_mode_options("max-autotune-no-cudagraphs"),
                                                                 "combo_kernels": True}} for call in calls)
    for call in calls:  # torch.compile itself takes them (it checks names and types when called, compiling nothing)
        real_compile(lambda x: x, **call)
    calls.clear()
    model.set_preview_decoder(tiny_preview_decoder())
    assert calls and all(call["options"]["combo_kernels"] is True for call in calls)
    fast = model.accelerate(compile=False, inductor={"combo_kernels": True})
    assert fast.inductor == {} and "inductor: off (its options shape compiled code, and compile is off)" in fast.notes
    for bad, error, message in [("combo", TypeError, "`inductor` must be a dict of Inductor options"),
                                ({"combo_kernel": True}, ValueError, "'combo_kernel', which is not an option"),
                                ({"triton": True}, ValueError, "'triton', which is not an option"),
                                ({"triton.cudagraphs": True}, ValueError, "captures its own CUDA graphs"),
                                ({"combo_kernels": [True]}, TypeError, r"`inductor\['combo_kernels'\]` must be a bool"),
                                ({"combo_kernels": 1}, TypeError, r"must be a bool \(torch._inductor.config.combo_kernels\)"),
                                ({"partitioned_scatter_memory_budget": 1}, TypeError, "must be a float")]:
        with pytest.raises(error, match=message):
            model.accelerate(compile=True, inductor=bad)
