"""The fast-path benchmark: diffusers' pipelines against latentlib's fast path, same models, same process.

Builds SD 1.5- and SDXL-shaped models with random weights (no download; speed does not depend on the
weights), then measures, for each: the UNet step at batch 1/2/8, a live frame (1 step without CFG,
with the preview decoder; and 4 steps), a 25-step DPM++ image with CFG, VAE encode/decode, a 16-frame
direction sweep (one batched call against 16 pipeline calls), and peak GPU memory. diffusers is timed
first (eager, as it ships), then latentlib eager (the reference images), then ``model.accelerate()``.
Every latentlib figure is printed beside diffusers' with the speed-up, the fast images are compared
with the eager ones, and on a GPU the UNet step is set against its FLOP floor.

    python bench/bench_fast.py --device cuda                 # H100/H200: full-size SD 1.5 (512) and SDXL (1024)
    python bench/bench_fast.py                               # CPU: the same layouts at tiny sizes (CI runs --quick)
    python bench/bench_fast.py --device cuda --models sd15   # one model

Writes JSON (default bench/results/fast.json). A ``--budget-s`` deadline skips models that would not
start in time, saying so in the JSON, so the GPU run fits its slot.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import latentlib as ll
from latentlib import testing
from latentlib.fast import _ATTENTION

#: Issue 8's targets on an H100/H200 for SD 1.5 at 512x512 (ms, except the sweep's speed-up).
TARGETS = {"live_frame_ms": 10.0, "unet_step_b2_ms": 6.0, "image_25_steps_cfg_ms": 300.0, "vae_decode_ms": 8.0,
           "sweep_speedup": 4.0}
#: Dense fp16 tensor throughput we count as reachable (DESIGN.md's floor: 0.80 TFLOP at ~790 TFLOP/s).
PEAK_TFLOPS = {"H100": 790.0, "H200": 790.0}
PROMPT = "a red circle on a black background"


sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import environment as _environment
from bench_core import failure, write_report
from bench_core import pipeline_for as _pipeline
from bench_core import timed as _timed


def timed(fn, device, repeats: int, warmup: int = 2) -> float:
    """Median milliseconds of ``repeats`` calls after ``warmup`` calls (bench_core's timer)."""
    return _timed(fn, device, repeats, warmup)["median_ms"]


# -- models -----------------------------------------------------------------------------------------
def _sd15(device, full: bool) -> dict:
    """SD 1.5's layout (UNet 860M, VAE f=8, CLIP ViT-L text encoder) at full size, or the test fixture's."""
    if not full:
        return testing.tiny_sd_components(sample_size=8)
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = testing.build_clip_tokenizer()
    with torch.device(device):
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                            sample_size=512, scaling_factor=0.18215, force_upcast=False)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072,
                                            num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                            pad_token_id=tokenizer.pad_token_id))
    scheduler = DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                            steps_offset=1, timestep_spacing="leading")
    return {"vae": vae, "unet": unet, "text_encoder": text, "tokenizer": tokenizer, "scheduler": scheduler}


def _sdxl(device, full: bool) -> dict:
    """SDXL's layout (UNet 2.6B with 10-layer transformers, two text encoders, 1024x1024), or the fixture's."""
    if not full:
        return testing.tiny_sdxl_components(sample_size=8)
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer, tokenizer_2 = testing.build_clip_tokenizer(), testing.build_clip_tokenizer()
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id, "vocab_size": len(tokenizer), "max_position_embeddings": 77}
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816)
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                            sample_size=1024, scaling_factor=0.13025, force_upcast=False)
        text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                            num_attention_heads=12, hidden_act="quick_gelu", **ids))
        text_2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=1280, intermediate_size=5120,
                                                            num_hidden_layers=32, num_attention_heads=20,
                                                            projection_dim=1280, hidden_act="gelu", **ids))
    scheduler = DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                            steps_offset=1, timestep_spacing="leading")
    return {"vae": vae, "unet": unet, "text_encoder": text, "tokenizer": tokenizer, "text_encoder_2": text_2,
            "tokenizer_2": tokenizer_2, "scheduler": scheduler}


def _preview_decoder(full: bool):
    from diffusers import AutoencoderTiny

    return AutoencoderTiny() if full else testing.tiny_preview_decoder()  # AutoencoderTiny() is TAESD's layout


# -- one model ----------------------------------------------------------------------------------------
def _unet_inputs(model, batch: int):
    h, w = model.default_size
    emb = model.embed([PROMPT] * batch)
    x = model.noise(0, n=batch)
    t = torch.tensor(500, device=model.device)
    added = None
    if model.is_sdxl:
        added = {"text_embeds": emb.pooled, "time_ids": model._add_time_ids(h, w).to(model.device, model.dtype)
                 .repeat(batch, 1)}
    return x, t, emb.embeds, added


def _unet_flops(model) -> float | None:
    from torch.utils.flop_counter import FlopCounterMode

    x, t, text, added = _unet_inputs(model, 1)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.unet(x, t, encoder_hidden_states=text, added_cond_kwargs=added)
    return float(counter.get_total_flops())


def inductor_options(text: str) -> dict:
    """``name=value,name=value`` -> Inductor options for ``accelerate(inductor=...)``: 1/0 and true/false are
    booleans, other numbers ints or floats, anything else a string (names are checked by accelerate)."""
    options = {}
    for pair in filter(None, text.split(",")):
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"{pair!r} is not name=value (e.g. combo_kernels=1)")
        value = raw.strip()
        lowered = value.lower()
        if lowered in ("1", "true", "0", "false"):
            options[name.strip()] = lowered in ("1", "true")
            continue
        for kind in (int, float):
            try:
                options[name.strip()] = kind(value)
                break
            except ValueError:
                pass
        else:
            options[name.strip()] = value
    return options


def _pixels_close(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a.float() - b.float()).abs()
    return {"max_abs": round(float(d.max()), 5), "mean_abs": round(float(d.mean()), 6)}


def _fast_phase(model, out, ours_ms, ours, ours_sweep, z, images, image_steps, repeats, device, *,
                compile_flag, graphs_flag, tuning: dict) -> dict:
    """Turn on ``model.accelerate()`` (with ``tuning``: its autotune, static_shapes and attention arguments),
    warm every shape up, time each figure into ``ours_ms`` and return the fast path's images (compared with the
    eager ones by the caller)."""
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fast = model.accelerate(compile=compile_flag, cuda_graphs=graphs_flag, **tuning)
        # the live frame's shapes one by one (compile and capture: seconds per shape), then the rest of them
        out["fast_warmup_shapes_s"] = model.warm_up(n=1, progress=False)
        print(f"  warm-up per shape (s): {out['fast_warmup_shapes_s']}", flush=True)
        fast_images = {"live": ours(1, 0.0), "image": ours(image_steps, 7.5), "sweep": ours_sweep()}
        with torch.no_grad():
            for batch in (1, 2, 8):  # compile and capture every shape the timings below use
                x, t, text, added = _unet_inputs(model, batch)
                if fast._unet is not None:
                    fast._unet(x, t, text, None, added)
        out["fast_warmup_s"] = round(time.perf_counter() - began, 1)
        print(f"  fast path warmed up in {out['fast_warmup_s']} s: {fast.report()}", flush=True)
        out["fast_path"] = fast.report()
        with torch.no_grad():
            for batch in (1, 2, 8):
                x, t, text, added = _unet_inputs(model, batch)
                if fast._unet is not None:
                    step = lambda x=x, t=t, text=text, added=added: fast._unet(x, t, text, None, added)
                else:
                    kw = {} if added is None else {"added_cond_kwargs": added}
                    step = lambda x=x, t=t, text=text, kw=kw: model.unet(x, t, encoder_hidden_states=text, **kw)
                ours_ms[f"unet_step_b{batch}_ms"] = timed(step, device, repeats)
            decode = fast._decode.get("full") or (lambda zz: model.vae.decode(zz, return_dict=False)[0])
            z_vae = (z.to(model.vae.dtype) / model.vae.config.scaling_factor).contiguous()
            ours_ms["vae_decode_ms"] = timed(lambda: decode(z_vae), device, repeats)
            ours_ms["vae_encode_ms"] = timed(lambda: model.vae.encode(images.to(device, model.vae.dtype) * 2 - 1),
                                             device, repeats)
        ours_ms["live_frame_ms"] = timed(lambda: ours(1, 0.0, decoder="preview"), device, repeats)
        ours_ms["live_frame_pil_ms"] = timed(lambda: ours(1, 0.0, decoder="preview", output="pil"), device, repeats)
        ours_ms["live_frame_full_vae_ms"] = timed(lambda: ours(1, 0.0), device, repeats)
        ours_ms["live_4_steps_ms"] = timed(lambda: ours(4, 0.0, decoder="preview"), device, repeats)
        # image-to-image from a fixed start image (4 steps at strength 0.5: 2 run); the cache skips its encoding,
        # which the second figure makes again on every frame (the start-image cache emptied before each call)
        def img2img():
            return model.generate(PROMPT, image=images, strength=0.5, seed=0, steps=4, guidance=0.0,
                                  decoder="preview", output="pt", progress=False)

        ours_ms["live_img2img_ms"] = timed(img2img, device, repeats)
        ours_ms["live_img2img_encoding_each_frame_ms"] = timed(lambda: fast._starts.clear() or img2img(), device,
                                                               repeats)
        ours_ms["image_25_steps_cfg_ms"] = timed(lambda: ours(image_steps, 7.5), device, max(3, repeats // 4), 1)
        ours_ms["sweep_ms"] = timed(ours_sweep, device, max(2, repeats // 8), 1)
    return fast_images


def _retuned_phase(model, ours, repeats, device, *, compile_flag, graphs_flag, tuning: dict) -> dict:
    """The fast path again with ``tuning`` (accelerate's autotune, static_shapes, attention), in the same process
    as the untuned one: the batch-1 and batch-2 UNet steps and the live frame, like for like, and the tuned
    UNet's output against the eager UNet's.
    ``warmup_s`` counts everything before the timings: turning the untuned path off, the eager reference step,
    and the tuned compile and graph capture."""
    began = time.perf_counter()
    model.decelerate()
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the untuned path's graphs and their memory pool go
    batches = {batch: _unet_inputs(model, batch) for batch in (1, 2)}
    with torch.no_grad():
        x, t, text, added = batches[1]
        kw = {} if added is None else {"added_cond_kwargs": added}
        eager = model.unet(x, t, encoder_hidden_states=text, **kw).sample
    torch._dynamo.reset()  # compile as a fresh process would: no automatic-dynamic memory of the untuned run's sizes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fast = model.accelerate(compile=compile_flag, cuda_graphs=graphs_flag, **tuning)
        ours(1, 0.0, decoder="preview")  # compiles and captures the live frame's shapes
        with torch.no_grad():
            run = fast._unet if fast._unet is not None else (
                lambda x, t, text, cond, added: model.unet(x, t, encoder_hidden_states=text,
                                                           **({} if added is None else {"added_cond_kwargs": added})
                                                           ).sample)
            tuned = run(x, t, text, None, added)
            for batch in (1, 2):
                run(*batches[batch][:3], None, batches[batch][3])
            result = {"autotune": tuning["autotune"], "warmup_s": round(time.perf_counter() - began, 1),
                      "fast_path": fast.report(), "unet_b1_vs_eager": _pixels_close(tuned, eager), "ms": {}}
            print(f"  retuned ({tuning['autotune']}) fast path warmed up in {result['warmup_s']} s", flush=True)
            for batch in (1, 2):
                xb, tb, textb, addedb = batches[batch]
                result["ms"][f"unet_step_b{batch}_ms"] = _r(timed(
                    lambda xb=xb, tb=tb, textb=textb, addedb=addedb: run(xb, tb, textb, None, addedb), device, repeats))
        result["ms"]["live_frame_ms"] = _r(timed(lambda: ours(1, 0.0, decoder="preview"), device, repeats))
    return result


def bench_model(label: str, components: dict, *, device, dtype, full: bool, repeats: int, image_steps: int,
                sweep_frames: int, compile_flag, graphs_flag, tuning: dict | None = None, also_autotune=None,
                progress=lambda out: None) -> dict:
    from diffusers import DPMSolverMultistepScheduler

    torch.backends.cudnn.benchmark = False  # diffusers' default: a previous model's fast path may have set it
    model = ll.Model(**components, name=label).to(device, dtype)
    model.scheduler = DPMSolverMultistepScheduler.from_config(model.scheduler.config)  # both sides: DPM++ 2M
    cuda = device.type == "cuda"
    h, w = model.default_size
    out: dict = {"model": label, "size": [h, w], "dtype": str(model.dtype).replace("torch.", ""),
                 "unet_parameters_m": round(sum(p.numel() for p in model.unet.parameters()) / 1e6, 1)}
    pipe = _pipeline(model)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    diffusers_ms, ours_ms, eager_ms = {}, {}, {}
    images = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))

    # 1. diffusers as it ships (eager)
    def pipe_call(steps, guidance, n=1, latents=None):
        gens = [torch.Generator().manual_seed(i) for i in range(n)]
        return pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, generator=gens,
                    num_images_per_prompt=n if latents is None else 1, latents=latents, output_type="pt",
                    height=h, width=w).images

    with torch.no_grad():
        for batch in (1, 2, 8):
            x, t, text, added = _unet_inputs(model, batch)
            kw = {} if added is None else {"added_cond_kwargs": added}
            diffusers_ms[f"unet_step_b{batch}_ms"] = timed(
                lambda x=x, t=t, text=text, kw=kw: model.unet(x, t, encoder_hidden_states=text, **kw), device, repeats)
        z = model.encode(images)
        diffusers_ms["vae_encode_ms"] = timed(lambda: model.vae.encode(images.to(device, model.vae.dtype) * 2 - 1),
                                              device, repeats)
        diffusers_ms["vae_decode_ms"] = timed(
            lambda: model.vae.decode(z.to(model.vae.dtype) / model.vae.config.scaling_factor), device, repeats)
    diffusers_ms["live_frame_full_vae_ms"] = timed(lambda: pipe_call(1, 0.0), device, repeats)
    # The like-for-like live frame: diffusers with the same TAESD-shaped decoder as its vae.
    preview = _preview_decoder(full).to(device, model.dtype)
    tiny_pipe = _pipeline(model, vae=preview)
    diffusers_ms["live_frame_ms"] = timed(
        lambda: tiny_pipe(PROMPT, num_inference_steps=1, guidance_scale=0.0, generator=[torch.Generator().manual_seed(0)],
                          output_type="pt", height=h, width=w).images, device, repeats)
    # What the lab shows: 8-bit PIL images on the host (diffusers' postprocess rounds with numpy on the host).
    diffusers_ms["live_frame_pil_ms"] = timed(
        lambda: tiny_pipe(PROMPT, num_inference_steps=1, guidance_scale=0.0, generator=[torch.Generator().manual_seed(0)],
                          output_type="pil", height=h, width=w).images, device, repeats)
    diffusers_ms["live_4_steps_ms"] = timed(lambda: pipe_call(4, 0.0), device, repeats)
    diffusers_ms["image_25_steps_cfg_ms"] = timed(lambda: pipe_call(image_steps, 7.5), device, max(3, repeats // 4), 1)
    strengths = torch.linspace(-3, 3, sweep_frames)
    direction = torch.randn(model.noise(0).shape[1:], generator=torch.Generator().manual_seed(1))
    direction = (direction / direction.norm()).to(device, model.dtype)
    # Unit noise has standard deviation 1 along any unit direction, so the strengths are in std units.
    sweep_latents = model.noise(0) + strengths.to(device, model.dtype)[:, None, None, None] * direction

    def pipe_sweep():
        return [pipe_call(4, 0.0, latents=sweep_latents[i : i + 1]) for i in range(sweep_frames)]

    diffusers_ms["sweep_ms"] = timed(pipe_sweep, device, max(2, repeats // 8), 1)
    if cuda:
        out["diffusers_peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)

    # 2. latentlib eager: the reference images
    def ours(steps, guidance, decoder="full", latents=None, seed=0, output="pt"):
        return model.generate(PROMPT, seed=seed, steps=steps, guidance=guidance, decoder=decoder, output=output,
                              latents=latents, progress=False)

    from types import SimpleNamespace

    xt_direction = SimpleNamespace(space="xT", vector=direction)

    def ours_sweep():  # one batched call: model.sweep
        return model.sweep(PROMPT, xt_direction, strengths, seed=0, steps=4, guidance=0.0, output="pt", progress=False)

    eager_images = {"live": ours(1, 0.0), "image": ours(image_steps, 7.5), "sweep": ours_sweep()}
    eager_ms["image_25_steps_cfg_ms"] = timed(lambda: ours(image_steps, 7.5), device, max(3, repeats // 4), 1)
    eager_ms["live_frame_ms"] = timed(lambda: ours(1, 0.0), device, repeats)

    out["figures"] = _figures(diffusers_ms, ours_ms, eager_ms)
    print(f"  {label}: diffusers and eager timed ({time.perf_counter() - t0:.0f} s)", flush=True)
    progress(out)  # diffusers' figures are kept even if what follows fails or runs out of time

    # 3. latentlib's fast path. A failure is recorded (with its traceback's last lines) rather than raised;
    # with CUDA graphs on, the fast path is then measured again without them, so a run still reports figures.
    model.set_preview_decoder(preview)
    attempts = [graphs_flag] + ([False] if cuda and graphs_flag is not False else [])
    fast_images = {}
    for graphs in attempts:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        try:
            fast_images = _fast_phase(model, out, ours_ms, ours, ours_sweep, z, images, image_steps, repeats,
                                      device, compile_flag=compile_flag, graphs_flag=graphs, tuning=tuning or {})
            break
        except Exception as error:  # noqa: BLE001 - a benchmark reports what broke and goes on
            out.setdefault("errors", []).append(
                {"phase": f"fast path (cuda_graphs={graphs})", **failure(error)})
            print(f"fast path (cuda_graphs={graphs}) failed: {type(error).__name__}: {error}", flush=True)
            ours_ms.clear()
            for stale in ("fast_path", "fast_warmup_s", "fast_warmup_shapes_s"):
                out.pop(stale, None)
            progress(out)
            try:
                model.decelerate()
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.empty_cache()
            except Exception as again:  # noqa: BLE001 - e.g. a sticky CUDA error: nothing more can run
                out["errors"].append({"phase": "cleanup", "error": f"{type(again).__name__}: {again}"[:500]})
                break
    if cuda:
        out["latentlib_peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    out["fast_matches_eager"] = {k: _pixels_close(fast_images[k], eager_images[k]) for k in fast_images}

    out["figures"] = _figures(diffusers_ms, ours_ms, eager_ms)
    out["figures"]["sweep_ms"]["what"] = (f"{sweep_frames} frames, 4 steps, no CFG: {sweep_frames} pipeline calls "
                                          f"vs one model.sweep call (batched)")
    out["sweep_speedup"] = out["figures"]["sweep_ms"].get("speedup")
    if cuda:
        flops = _unet_flops(model)
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in torch.cuda.get_device_name()), None)
        out["unet_step_b1_tflop"] = round(flops / 1e12, 3)
        if peak:
            floor = flops / (peak * 1e12) * 1e3
            out["unet_floor_b1_ms"] = round(floor, 3)
            out["fraction_of_floor"] = {side: round(floor / ms["unet_step_b1_ms"], 3)
                                        for side, ms in (("diffusers", diffusers_ms), ("latentlib", ours_ms))
                                        if "unet_step_b1_ms" in ms}
    out["notes"] = [
        ("live_frame_ms: both sides decode with the same TAESD-shaped AutoencoderTiny; live_frame_full_vae_ms: both "
         "with the full VAE."),
        ("latentlib's fast path reuses prompt embeddings and seed noise across calls (its cache); diffusers encodes "
         "the prompt on every call, as it ships."),
        "diffusers returns GPU tensors (output_type='pt'); latentlib copies the frame to the CPU as float32.",
        ("live_img2img_ms (latentlib only): 4 steps at strength 0.5 (2 run) from a fixed start image, preview "
         "decoder; the fast path's cache encodes the start image once; live_img2img_encoding_each_frame_ms empties "
         "that cache before each call."),
        ("live_frame_pil_ms: the live frame as 8-bit PIL images on the host, what the lab shows (both sides, TAESD-"
         "shaped decoder); latentlib rounds to 8 bits on the GPU, diffusers with numpy on the host."),
    ]
    if also_autotune is not None and "fast_path" in out:
        progress(out)  # the figures so far are kept if the retuned compile runs out of time
        try:
            out["retuned"] = _retuned_phase(model, ours, repeats, device, compile_flag=compile_flag,  # the graphs
                                            graphs_flag=out["fast_path"]["cuda_graphs"],  # setting that worked
                                            tuning={**(tuning or {}), "autotune": also_autotune})
            for key, ms in out["retuned"]["ms"].items():
                print(f"  {key} with autotune={also_autotune}: {ms:.2f} ms (untuned {out['figures'][key]['latentlib_ms']})")
        except Exception as error:  # noqa: BLE001 - a benchmark reports what broke and goes on
            out.setdefault("errors", []).append({"phase": f"retuned ({also_autotune})", **failure(error)})
    del pipe, tiny_pipe, model
    if cuda:
        torch.cuda.empty_cache()
    torch._dynamo.reset()  # each model compiles from scratch, as it would alone
    return out


def _figures(diffusers_ms: dict, ours_ms: dict, eager_ms: dict) -> dict:
    """One row per figure: diffusers', latentlib's fast and eager milliseconds, and the speed-up."""
    figures = {}
    for key in sorted(set(diffusers_ms) | set(ours_ms)):
        row = {"diffusers_ms": _r(diffusers_ms.get(key)), "latentlib_ms": _r(ours_ms.get(key)),
               "latentlib_eager_ms": _r(eager_ms.get(key))}
        if key in diffusers_ms and key in ours_ms:
            row["speedup"] = round(diffusers_ms[key] / ours_ms[key], 2)
        figures[key] = row
    return figures


def _r(v):
    return None if v is None else round(v, 3)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--dtype", default=None, help="float16 (default on CUDA), bfloat16 or float32 (default on CPU)")
    parser.add_argument("--models", default="sd15,sdxl", help="comma-separated: sd15, sdxl (default: both)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per figure (default: 20)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip a model that would start after this")
    parser.add_argument("--compile", default="auto", choices=("auto", "on", "off"), help="torch.compile (auto: CUDA)")
    parser.add_argument("--autotune", default="off", choices=("off", "coordinate-descent", "max-autotune"),
                        help="how Inductor tunes the compiled kernels (latentlib.fast.accelerate's autotune; default off)")
    parser.add_argument("--also-autotune", default=None, choices=("coordinate-descent", "max-autotune"),
                        help="after the fast path's figures, accelerate again with this autotune and time the batch-1 "
                             "and batch-2 UNet steps and the live frame in the same process (default: no)")
    parser.add_argument("--static-shapes", action="store_true",
                        help="compile each batch size on its own (latentlib.fast.accelerate's static_shapes; default no)")
    parser.add_argument("--attention", default="auto", choices=_ATTENTION,
                        help="the attention kernel the fast UNet tries first (latentlib.fast.accelerate's attention; "
                             "default auto: PyTorch's order)")
    parser.add_argument("--inductor", default="", type=inductor_options,
                        help="more Inductor options, name=value pairs separated by commas, e.g. combo_kernels=1 "
                             "(latentlib.fast.accelerate's inductor; 1/0 and true/false are booleans, so a value "
                             "cannot hold a comma; default none)")
    parser.add_argument("--quick", action="store_true", help="3 repeats, 2-step image, 4-frame sweep: a smoke run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fast.json"), help="JSON to write")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but CUDA is not available here; use --device cpu.")
    full = device.type == "cuda"
    dtype = ll.model._resolve_dtype(args.dtype, device)
    repeats, image_steps, frames = (3, 2, 4) if args.quick else (args.repeats, 25, 16)
    compile_flag = {"auto": "auto", "on": True, "off": False}[args.compile]
    builders = {"sd15": _sd15, "sdxl": _sdxl}
    began = time.perf_counter()
    runs, skipped = [], []
    for name in args.models.split(","):
        if name not in builders:
            raise SystemExit(f"--models: {name!r} is not known; use sd15, sdxl.")
        if time.perf_counter() - began > args.budget_s:
            skipped.append(f"{name}: not started, {time.perf_counter() - began:.0f} s of the {args.budget_s:.0f} s budget used")
            continue
        torch.manual_seed(0)
        label = f"{name}-{'full' if full else 'tiny'}"
        print(f"building {label} ...", flush=True)
        runs.append(bench_model(label, builders[name](device, full), device=device, dtype=dtype, full=full,
                                repeats=repeats, image_steps=image_steps, sweep_frames=frames,
                                compile_flag=compile_flag, graphs_flag="auto", also_autotune=args.also_autotune,
                                tuning={"autotune": args.autotune, "static_shapes": args.static_shapes,
                                        "attention": args.attention, "inductor": args.inductor},
                                progress=lambda part: _write(args, device, [*runs, part], skipped, began)))
        _print(runs[-1])
        _write(args, device, runs, skipped, began)  # after every model: a run stopped later keeps this one
    return _write(args, device, runs, skipped, began, final=True)


def _write(args, device, runs, skipped, began, final: bool = False) -> dict:
    report = {
        "benchmark": "fast",
        **_environment(),
        "threads": torch.get_num_threads(), "device": str(device), "quick": args.quick, "skipped": skipped,
        "complete": final, "compile": args.compile, "autotune": args.autotune, "also_autotune": args.also_autotune,
        "static_shapes": args.static_shapes, "attention": args.attention, "inductor": args.inductor,
        "targets_sd15": TARGETS, "runs": runs, "seconds": round(time.perf_counter() - began, 1),
    }
    sd = next((r for r in runs if r["model"] == "sd15-full"), None)
    if sd is not None:
        got = {k: sd["figures"][k]["latentlib_ms"] for k in TARGETS if k in sd["figures"]}
        got["sweep_speedup"] = sd.get("sweep_speedup")
        report["targets_met"] = {k: None if got.get(k) is None else bool(got[k] >= v if k == "sweep_speedup" else got[k] <= v)
                                 for k, v in TARGETS.items()}
    write_report(args.out, report, announce=final)
    return report


def _print(run: dict) -> None:
    print(f"\n{run['model']} {run['size'][1]}x{run['size'][0]} {run['dtype']}  fast path: {run.get('fast_path')}")
    print(f"  {'figure':26} {'diffusers':>11} {'latentlib':>11} {'speed-up':>9}")
    for key, row in run["figures"].items():
        d, o = row["diffusers_ms"], row["latentlib_ms"]
        print(f"  {key:26} {'' if d is None else f'{d:9.2f}ms':>11} {'' if o is None else f'{o:9.2f}ms':>11} "
              f"{row.get('speedup', ''):>9}")
    print(f"  fast vs eager pixels: {run['fast_matches_eager']}")
    for error in run.get("errors", []):
        print(f"  error in {error['phase']}: {error['error']}")


if __name__ == "__main__":
    main()
