"""Our generation loop against diffusers' own pipelines, and its hooks."""

import pickle
import threading

import numpy as np
import pytest
import torch

import latentlib as ll

TOL = 1e-4


def _gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("scheduler", ["default", "euler-a", "dpm++2m-karras", "heun", "unipc", "lcm"])
@pytest.mark.parametrize("guidance", [1.0, 6.0])
def test_sd_txt2img_matches_pipeline(sd, sd_pipe, scheduler, guidance):
    from latentlib.schedulers import make_scheduler

    prompts = ["a red circle", "a blue square on a black background"]
    ours = sd.generate(prompts, seed=3, steps=4, guidance=guidance, scheduler=scheduler, output="np",
                       return_latents=True, progress=False)
    sd_pipe.scheduler = make_scheduler(scheduler, sd.scheduler)
    ref = sd_pipe(prompts, num_inference_steps=4, guidance_scale=guidance, generator=_gens([3, 4]),
                  output_type="latent").images
    assert (ours[1] - ref).abs().max().item() <= TOL
    ref_img = sd_pipe(prompts, num_inference_steps=4, guidance_scale=guidance, generator=_gens([3, 4]),
                      output_type="np").images
    assert np.abs(ours[0] - ref_img).max() <= TOL


def test_sd_txt2img_with_negative_prompt_and_latents(sd, sd_pipe):
    x = sd.noise(seed=11, n=2)
    ours = sd.generate("a green star", "red", latents=x, steps=3, guidance=4.0, output="latent", progress=False)
    sd_pipe.scheduler = sd.scheduler
    ref = sd_pipe("a green star", negative_prompt="red", num_images_per_prompt=2, latents=x, num_inference_steps=3,
                  guidance_scale=4.0, output_type="latent").images
    assert (ours - ref).abs().max().item() <= TOL


@pytest.mark.parametrize("scheduler", ["default", "dpm++2m"])
@pytest.mark.parametrize("guidance", [1.0, 5.0])
def test_sd_img2img_matches_pipeline(sd, images, guidance, scheduler):
    from diffusers import StableDiffusionImg2ImgPipeline

    from latentlib.schedulers import make_scheduler

    pipe = StableDiffusionImg2ImgPipeline(
        vae=sd.vae, unet=sd.unet, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer,
        scheduler=make_scheduler(scheduler, sd.scheduler),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    z0 = sd.encode(images[:2])
    ours = sd.generate("a cat", image=z0, strength=0.6, seed=5, steps=10, guidance=guidance, output="latent",
                       scheduler=scheduler, progress=False)
    ref = pipe(["a cat"] * 2, image=z0, strength=0.6, num_inference_steps=10, guidance_scale=guidance,
               generator=_gens([5, 6]), output_type="latent").images
    assert (ours - ref).abs().max().item() <= TOL


@pytest.mark.parametrize("guidance", [1.0, 5.0])
def test_sdxl_txt2img_matches_pipeline(sdxl, sdxl_pipe, guidance):
    prompts = ["a red circle", "a photo of a cat"]
    ours = sdxl.generate(prompts, seed=7, steps=4, guidance=guidance, output="np", return_latents=True,
                         progress=False)
    ref = sdxl_pipe(prompts, num_inference_steps=4, guidance_scale=guidance, generator=_gens([7, 8]),
                    output_type="latent").images
    assert (ours[1] - ref).abs().max().item() <= TOL
    ref_img = sdxl_pipe(prompts, num_inference_steps=4, guidance_scale=guidance, generator=_gens([7, 8]),
                        output_type="np").images
    assert np.abs(ours[0] - ref_img).max() <= TOL


def test_sdxl_negative_prompt_matches_pipeline(sdxl, sdxl_pipe):
    ours = sdxl.generate("a dog", "blurry", seed=2, steps=3, guidance=3.0, output="latent", progress=False)
    ref = sdxl_pipe("a dog", negative_prompt="blurry", num_inference_steps=3, guidance_scale=3.0,
                    generator=_gens([2]), output_type="latent").images
    assert (ours - ref).abs().max().item() <= TOL


@pytest.mark.parametrize("guidance", [1.0, 5.0])
def test_sdxl_img2img_matches_pipeline(sdxl, images, guidance):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    pipe = StableDiffusionXLImg2ImgPipeline(
        vae=sdxl.vae, unet=sdxl.unet, text_encoder=sdxl.text_encoder, text_encoder_2=sdxl.text_encoder_2,
        tokenizer=sdxl.tokenizer, tokenizer_2=sdxl.tokenizer_2, scheduler=sdxl.scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    z0 = sdxl.encode(images[:1])
    ours = sdxl.generate("a cat", image=z0, strength=0.5, seed=9, steps=8, guidance=guidance, output="latent",
                         progress=False)
    ref = pipe("a cat", image=z0, strength=0.5, num_inference_steps=8, guidance_scale=guidance,
               generator=_gens([9]), output_type="latent").images
    assert (ours - ref).abs().max().item() <= TOL


def test_same_seed_same_output_and_batch_item_equals_single_run(sd):
    kwargs = dict(steps=3, guidance=5.0, scheduler="euler-a", output="latent", progress=False)
    batch = sd.generate("a red circle", seed=10, n=3, **kwargs)
    again = sd.generate("a red circle", seed=10, n=3, **kwargs)
    assert torch.equal(batch, again)
    for i in range(3):
        single = sd.generate("a red circle", seed=10 + i, **kwargs)
        torch.testing.assert_close(batch[i : i + 1], single, rtol=0, atol=1e-4)  # batched BLAS rounding
    listed = sd.generate("a red circle", seed=[12, 10], **kwargs)
    torch.testing.assert_close(listed, batch[[2, 0]], rtol=0, atol=1e-4)


def test_noise_item_is_independent_of_batch(sd):
    batch = sd.noise(seed=4, n=3)
    assert batch.shape == (3, 4, 8, 8)
    for i in range(3):
        assert torch.equal(batch[i : i + 1], sd.noise(seed=4 + i))
    assert torch.equal(sd.noise(seed=[6, 4]), batch[[2, 0]])
    assert sd.noise(seed=0, height=128, width=64).shape == (1, 4, 16, 8)
    assert not torch.equal(sd.noise(0), sd.noise(1))


def test_prompt_embedding_equals_string_prompt(sd):
    kwargs = dict(seed=1, steps=2, guidance=3.0, output="latent", progress=False)
    a = sd.generate("a blue star", **kwargs)
    b = sd.generate(sd.embed("a blue star"), negative_prompt=sd.embed(""), **kwargs)
    assert torch.equal(a, b)


def test_callback_sees_every_step_and_can_replace_latents(sd):
    seen = []

    def record(step: ll.Step):
        seen.append((step.index, step.total, tuple(step.latents.shape)))

    sd.generate("a cat", seed=0, steps=5, callback=record, progress=False)
    assert seen == [(i, 5, (1, 4, 8, 8)) for i in range(5)]

    def zero_last(step):
        return torch.zeros_like(step.latents) if step.index == step.total - 1 else None

    out = sd.generate("a cat", seed=0, steps=3, callback=zero_last, output="latent", progress=False)
    assert torch.equal(out, torch.zeros_like(out))


def test_callback_stop_and_interrupt_end_early(sd):
    seen = []

    def stop_at_two(step):
        seen.append(step.latents.clone())
        if step.index == 1:
            step.stop()

    early = sd.generate("a cat", seed=0, steps=6, callback=stop_at_two, output="latent", progress=False)
    assert len(seen) == 2
    assert torch.equal(early, seen[1])  # the latents after the second step come back
    full = sd.generate("a cat", seed=0, steps=6, output="latent", progress=False)
    assert not torch.allclose(early, full)

    event = threading.Event()
    counted = []

    def set_after_first(step):
        counted.append(step.index)
        event.set()

    decodes = []
    decode = sd.vae.decode
    sd.vae.decode = lambda *a, **k: decodes.append(1) or decode(*a, **k)
    try:
        with pytest.raises(ll.Interrupted, match=r"after 1 of 6 steps \(nothing decoded\)") as stopped:
            sd.generate("a cat", seed=0, steps=6, callback=set_after_first, interrupt=event, progress=False)
        assert counted == [0] and decodes == []  # stopped before the second step, and nothing decoded
        sd.generate("a cat", seed=0, steps=1, progress=False)
        assert decodes == [1]  # the counter sees the decode of a run that finishes
    finally:
        del sd.vae.decode
    first = sd.generate("a cat", seed=0, steps=6, callback=lambda step: step.stop(), output="latent", progress=False)
    assert (stopped.value.step, stopped.value.total) == (1, 6) and torch.equal(stopped.value.latents, first)
    again = pickle.loads(pickle.dumps(stopped.value))
    assert (again.step, again.total, str(again)) == (1, 6, str(stopped.value)) and torch.equal(again.latents, first)


def test_every_named_scheduler_runs(sd):
    for name in ["default", *ll.SCHEDULERS]:
        out = sd.generate("a cat", seed=0, steps=2, guidance=2.0, scheduler=name, output="latent", progress=False)
        assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all(), name


@pytest.mark.parametrize("name", ["euler", "euler-a", "heun", "lms", "dpm++2m-sde-karras", "unipc", "lcm"])
@pytest.mark.parametrize("with_callback", [False, True])
def test_the_start_index_is_found_before_the_first_unet_call(sd, name, with_callback):
    """The scheduler's first-step lookup reads its timesteps back from the device; the loop makes it before the
    UNet runs (a GPU would otherwise make the host wait for the UNet there), by the scheduler's own rule."""
    from latentlib.schedulers import make_scheduler

    events = []
    made = make_scheduler(name, sd.scheduler)

    def index_for_timestep(self, timestep, schedule_timesteps=None):
        events.append("lookup")
        return type(made).index_for_timestep(self, timestep, schedule_timesteps)

    recording = type("Recording", (type(made),), {"index_for_timestep": index_for_timestep}).from_config(made.config)
    handle = sd.unet.register_forward_pre_hook(lambda *a: events.append("unet"))
    try:
        out = sd.generate("a cat", seed=0, steps=3, guidance=1.0, scheduler=recording, output="latent", progress=False,
                          callback=(lambda step: None) if with_callback else None)
    finally:
        handle.remove()
    assert events[0] == "lookup" and "lookup" not in events[events.index("unet"):], events
    assert out.shape == (1, 4, 8, 8)


def test_early_start_index_classes_do_what_their_first_step_does():
    """The loop looks the start index up early only for these classes: each one's first ``step`` (or
    ``scale_model_input``) calls ``_init_step_index(timestep)`` when its step index is unset."""
    import inspect

    from latentlib.schedulers import EARLY_INDEX

    for cls in EARLY_INDEX:
        source = inspect.getsource(cls.step) + inspect.getsource(cls.scale_model_input)
        assert "if self.step_index is None:" in source and "self._init_step_index(timestep)" in source, cls.__name__
        init = inspect.getsource(cls._init_step_index)
        assert "self.index_for_timestep(timestep)" in init and "self._begin_index" in init, cls.__name__


def test_stochastic_scheduler_is_seeded(sd):
    kwargs = dict(steps=3, guidance=1.0, scheduler="euler-a", output="latent", progress=False)
    x = sd.noise(seed=0)
    a = sd.generate("a cat", latents=x, seed=1, **kwargs)
    b = sd.generate("a cat", latents=x, seed=2, **kwargs)
    assert not torch.equal(a, b)  # same start, different ancestral noise
    assert torch.equal(a, sd.generate("a cat", latents=x, seed=1, **kwargs))



def test_given_generators_are_continued(sd):
    kwargs = dict(steps=3, guidance=1.0, scheduler="euler-a", output="latent", progress=False)
    a = sd.generate("a cat", seed=[4, 5], **kwargs)
    fresh = [torch.Generator().manual_seed(4), torch.Generator().manual_seed(5)]
    assert torch.equal(a, sd.generate("a cat", seed=[4, 5], generators=fresh, **kwargs))  # same streams, same draws
    advanced = [torch.Generator().manual_seed(4), torch.Generator().manual_seed(5)]
    torch.randn(7, generator=advanced[1])
    b = sd.generate("a cat", seed=[4, 5], generators=advanced, **kwargs)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])  # item 1 continued its own, advanced stream
    # with the start noise given, only the sampler's step noise comes from the generators
    x = sd.noise(seed=[4, 5])
    c = sd.generate("a cat", latents=x, seed=[4, 5], **kwargs)
    advanced = [torch.Generator().manual_seed(4), torch.Generator().manual_seed(5)]
    torch.randn(7, generator=advanced[1])
    d = sd.generate("a cat", latents=x, seed=[4, 5], generators=advanced, **kwargs)
    assert torch.equal(c[0], d[0]) and not torch.equal(c[1], d[1])

@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_img2img_from_pixels_matches_pipeline(request, images, kind):
    """Pixel start images are encoded by sampling the posterior with each image's generator, as diffusers does."""
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline

    model = request.getfixturevalue(kind)
    parts = dict(vae=model.vae, unet=model.unet, text_encoder=model.text_encoder, tokenizer=model.tokenizer,
                 scheduler=model.scheduler)
    if kind == "sd":
        pipe = StableDiffusionImg2ImgPipeline(**parts, safety_checker=None, feature_extractor=None,
                                              requires_safety_checker=False)
    else:
        pipe = StableDiffusionXLImg2ImgPipeline(**parts, text_encoder_2=model.text_encoder_2,
                                                tokenizer_2=model.tokenizer_2)
    pipe.set_progress_bar_config(disable=True)
    one = images[:1]
    ours = model.generate(["a cat", "a dog"], image=one, strength=0.7, seed=3, steps=5, guidance=4.0,
                          output="latent", progress=False)
    ref = pipe(["a cat", "a dog"], image=one * 2 - 1, strength=0.7, num_inference_steps=5, guidance_scale=4.0,
               generator=_gens([3, 4]), output_type="latent").images
    assert (ours - ref).abs().max().item() <= TOL
    as_pil = model.generate(["a cat", "a dog"], image=model.decode(model.encode(one))[0], strength=0.7, seed=3,
                            steps=5, guidance=4.0, output="latent", progress=False)
    assert as_pil.shape == ours.shape and torch.isfinite(as_pil).all()


def test_strength_zero_returns_the_image(sd, images):
    z0 = sd.encode(images[:1])
    out = sd.generate("a cat", image=z0, strength=0.0, steps=4, output="latent", progress=False)
    assert torch.equal(out, z0) and out is not z0


def test_guidance_embedding_matches_diffusers():
    from diffusers import LatentConsistencyModelPipeline

    from latentlib.sampling import guidance_embedding

    w = torch.tensor([0.0, 3.5, 7.0])
    ref = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, w, embedding_dim=256)
    torch.testing.assert_close(guidance_embedding(w, 256), ref)


def test_output_kinds_agree(sd):
    kwargs = dict(seed=0, steps=2, progress=False)
    pil = sd.generate("a cat", **kwargs)
    arr = sd.generate("a cat", output="np", **kwargs)
    pt = sd.generate("a cat", output="pt", **kwargs)
    assert pil[0].size == (64, 64) and arr.shape == (1, 64, 64, 3) and pt.shape == (1, 3, 64, 64)
    np.testing.assert_array_equal(np.asarray(pil[0]), (arr[0] * 255).round().astype(np.uint8))
    np.testing.assert_allclose(pt.permute(0, 2, 3, 1).numpy(), arr)


def test_v_prediction_and_guidance_distilled_unets_match_pipeline():
    """SD 2.x (v-prediction) and LCM-style UNets (guidance embedding, no CFG) take the same path as diffusers."""
    from diffusers import LCMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from latentlib.testing import tiny_sd_components

    parts = tiny_sd_components()
    parts["scheduler"] = type(parts["scheduler"]).from_config(parts["scheduler"].config, prediction_type="v_prediction")
    model = ll.Model(**parts)
    assert model.scheduler.config.prediction_type == "v_prediction"
    pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    ours = model.generate("a cat", seed=0, steps=4, guidance=5.0, output="latent", progress=False)
    ref = pipe("a cat", num_inference_steps=4, guidance_scale=5.0, generator=_gens([0]), output_type="latent").images
    assert (ours - ref).abs().max().item() <= TOL

    parts = tiny_sd_components()
    torch.manual_seed(0)
    parts["unet"] = UNet2DConditionModel(**{**parts["unet"].config, "time_cond_proj_dim": 32}).eval()
    parts["scheduler"] = LCMScheduler.from_config(parts["scheduler"].config)
    model = ll.Model(**parts)
    pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    ours = model.generate("a cat", seed=1, steps=4, guidance=8.0, output="latent", progress=False)
    ref = pipe("a cat", num_inference_steps=4, guidance_scale=8.0, generator=_gens([1]), output_type="latent").images
    assert (ours - ref).abs().max().item() <= TOL


def test_guidance_rescale_and_ddim_eta_match_pipeline(sd, sd_pipe):
    sd_pipe.scheduler = sd.scheduler
    ours = sd.generate(["a cat", "a dog"], seed=2, steps=4, guidance=7.0, guidance_rescale=0.7, eta=0.5,
                       scheduler="ddim", output="latent", progress=False)
    ref = sd_pipe(["a cat", "a dog"], num_inference_steps=4, guidance_scale=7.0, guidance_rescale=0.7, eta=0.5,
                  generator=_gens([2, 3]), output_type="latent").images
    assert (ours - ref).abs().max().item() <= TOL


def test_named_schedulers_are_the_classes_and_settings_they_claim():
    """Checked against diffusers' documented settings, independently of make_scheduler's table."""
    from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

    from latentlib.schedulers import make_scheduler

    karras_sde_base = DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", use_karras_sigmas=True)
    expect = {
        "ddim": ("DDIMScheduler", {}),
        "euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}),
        "euler-karras": ("EulerDiscreteScheduler", {"use_karras_sigmas": True}),
        "euler-a": ("EulerAncestralDiscreteScheduler", {}),
        "dpm++2m": ("DPMSolverMultistepScheduler",
                    {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
        "dpm++2m-karras": ("DPMSolverMultistepScheduler",
                           {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
        "dpm++2m-sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": False}),
        "unipc": ("UniPCMultistepScheduler", {"use_karras_sigmas": False}),
        "lcm": ("LCMScheduler", {}),
    }
    for name, (cls_name, settings) in expect.items():
        made = make_scheduler(name, karras_sde_base)
        assert type(made).__name__ == cls_name, name
        for key, value in settings.items():
            assert made.config[key] == value, (name, key)
    exp_base = EulerDiscreteScheduler(use_exponential_sigmas=True)
    assert make_scheduler("euler-karras", exp_base).config.use_exponential_sigmas is False
    assert make_scheduler("default", karras_sde_base).config.use_karras_sigmas is True


def test_each_run_gets_its_own_scheduler_state():
    """make_scheduler copies a kept template: the copies share no tensor or list with it or with each other."""
    from diffusers import DPMSolverMultistepScheduler

    from latentlib.schedulers import make_scheduler

    base = DPMSolverMultistepScheduler()
    a, b = make_scheduler(None, base), make_scheduler(None, base)
    a.alphas_cumprod.mul_(0)
    a.model_outputs.append("x")
    a.set_timesteps(3)
    c = make_scheduler(None, base)
    for other in (b, c):
        assert torch.equal(other.alphas_cumprod, base.alphas_cumprod) and other.alphas_cumprod.data_ptr() != \
            a.alphas_cumprod.data_ptr()
        assert other.model_outputs == base.model_outputs and other.num_inference_steps is None
    assert c.config == base.config and type(c) is type(base)
    a.config.flow_shift = 9.0  # as DPM-Solver's set_timesteps(mu=...) does; FrozenDict lets attributes be set
    assert make_scheduler(None, base).config.flow_shift == base.config.flow_shift != 9.0


def test_ddim_from_a_config_that_does_not_say_does_not_clip_latents():
    """diffusers' DDIM defaults to clipping x0 to [-1, 1] (pixel space); from a DPM config (which has no
    such key) it must come out off, while a config that sets it keeps its value."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    from latentlib.schedulers import make_scheduler

    assert DDIMScheduler.from_config(DPMSolverMultistepScheduler().config).config.clip_sample is True  # the trap
    made = make_scheduler("ddim", DPMSolverMultistepScheduler())
    assert made.config.clip_sample is False and made.config.thresholding is False
    assert make_scheduler("ddim", DDIMScheduler(clip_sample=True)).config.clip_sample is True


def test_n_and_seed_must_agree_with_latents(sd):
    x = sd.noise(0, n=2)
    with pytest.raises(ValueError, match=r"`n` is 5 but `latents` has a batch of 2"):
        sd.generate("a cat", latents=x, n=5, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"`seed` lists 3 seeds but `latents` has a batch of 2"):
        sd.generate("a cat", latents=x, seed=[1, 2, 3], steps=1, progress=False)
    with pytest.raises(ValueError, match=r"`seed` must be in \[0, 2\*\*63 - 1 - n\], got 18446744073709551616"):
        sd.generate("a cat", seed=2**64, steps=1, progress=False)
    import numpy as np

    a = sd.generate("a cat", seed=np.int64(4), steps=1, output="latent", progress=False)
    assert torch.equal(a, sd.generate("a cat", seed=4, steps=1, output="latent", progress=False))


def test_output_latent_with_return_latents_gives_the_pair(sd):
    a, b = sd.generate("a cat", steps=1, output="latent", return_latents=True, progress=False)
    assert a is b and a.shape == (1, 4, 8, 8)
