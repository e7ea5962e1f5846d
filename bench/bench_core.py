"""Core benchmark: encode, decode, one UNet step, and our generate vs diffusers' pipeline on the same inputs.

Prints a table and writes JSON (default: bench/results/core.json). Runs on CPU with tiny random
SD-shaped models built in-process (no download); ``--device cuda`` runs the same on a GPU.
The default model is measured too once it ships (``latentlib.load()``).

    python bench/bench_core.py                  # CPU, tiny + small models
    python bench/bench_core.py --quick          # a few repeats, for a smoke run
    python bench/bench_core.py --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import latentlib as ll
from latentlib.testing import tiny_sd_components


def environment() -> dict:
    """The ``machine`` and ``versions`` entries every benchmark's JSON carries."""
    import diffusers

    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "diffusers": diffusers.__version__,
                     "latentlib": ll.__version__},
    }


def positive_numbers(parser: argparse.ArgumentParser, option: str, text: str) -> list[float]:
    """A comma-separated option's numbers (empty items skipped), each finite and > 0, or ``parser.error``
    (exit code 2) naming the option and what it was given."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        parser.error(f"{option} must be numbers > 0 separated by commas, got {text!r}")
    return values


def write_report(out, report: dict, *, announce: bool = True) -> Path:
    """Write a benchmark's JSON to ``out`` (folders made), atomically: a temporary file, then a rename."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=float))
    tmp.replace(out)
    if announce:
        print(f"wrote {out}")
    return out


def failure(error: BaseException) -> dict:
    """What a benchmark records for a phase that raised (call inside the ``except``): the error and its traceback's
    last lines."""
    import traceback

    return {"error": f"{type(error).__name__}: {error}"[:500], "traceback": traceback.format_exc().splitlines()[-12:]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int, warmup: int = 2) -> dict:
    """Median and spread of ``repeats`` calls, in milliseconds, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(samples), "min_ms": min(samples), "max_ms": max(samples),
            "repeats": repeats}


def paired(fn_a, fn_b, device, repeats: int, warmup: int = 2) -> tuple[dict, dict, float]:
    """Time two functions alternately (same thermal and cache state); return both and the median ratio a/b."""
    for _ in range(warmup):
        fn_a(), fn_b()
    a, b, ratios = [], [], []
    for _ in range(repeats):
        for fn, out in ((fn_a, a), (fn_b, b)):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            out.append((time.perf_counter() - start) * 1e3)
        ratios.append(a[-1] / b[-1])

    def stats(s):
        return {"median_ms": statistics.median(s), "min_ms": min(s), "max_ms": max(s), "repeats": repeats}

    return stats(a), stats(b), statistics.median(ratios)


def pipeline_for(model: ll.Model, vae=None):
    """diffusers' own pipeline (SD or SDXL) on the model's components, ``vae`` replacing its VAE if given."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    parts = {"vae": vae if vae is not None else model.vae, "unet": model.unet, "text_encoder": model.text_encoder,
             "tokenizer": model.tokenizer, "scheduler": model.scheduler}
    if model.is_sdxl:
        pipe = StableDiffusionXLPipeline(**parts, text_encoder_2=model.text_encoder_2, tokenizer_2=model.tokenizer_2)
    else:
        pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def bench_model(name: str, model: ll.Model, *, repeats: int, steps: int) -> dict:
    device = model.device
    h, w = model.default_size
    out: dict = {"model": name, "size": [h, w], "device": str(device), "dtype": str(model.dtype).replace("torch.", "")}
    images = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    z = model.encode(images)
    out["encode_b1"] = timed(lambda: model.encode(images), device, repeats)
    out["decode_b1"] = timed(lambda: model.decode(z, output="pt"), device, repeats)
    emb = model.embed(["a red circle", ""])
    x = model.noise(0, n=1)
    t = torch.tensor(500, device=device)
    added = None
    if model.is_sdxl:
        added = {"text_embeds": emb.pooled, "time_ids": model._add_time_ids(h, w).to(device, model.dtype).repeat(2, 1)}

    @torch.no_grad()
    def unet_step(batch):
        kwargs = {} if added is None else {"added_cond_kwargs": {k: v[:batch] for k, v in added.items()}}
        model.unet(x.repeat(batch, 1, 1, 1), t, encoder_hidden_states=emb.embeds[:batch], **kwargs)

    out["unet_step_b1"] = timed(lambda: unet_step(1), device, repeats)
    out["unet_step_b2"] = timed(lambda: unet_step(2), device, repeats)

    pipe = pipeline_for(model)
    prompt, guidance = "a red circle on a black background", 5.0

    def ours():
        return model.generate(prompt, seed=0, steps=steps, guidance=guidance, output="pil", progress=False)

    def theirs():
        g = [torch.Generator().manual_seed(0)]
        return pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, generator=g).images

    import numpy as np

    same = int(np.abs(np.asarray(ours()[0], np.int16) - np.asarray(theirs()[0], np.int16)).max())
    a, b, ratio = paired(ours, theirs, device, repeats)
    out["generate"] = {"steps": steps, "guidance": guidance, "latentlib": a, "diffusers_pipeline": b,
                       "ratio_latentlib_over_pipeline": ratio, "max_pixel_difference": same}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (default: the device's)")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per measurement (default: 15)")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps for the generate comparison")
    parser.add_argument("--quick", action="store_true", help="3 repeats, 2 steps: a smoke run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "core.json"),
                        help="JSON file to write (default: bench/results/core.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.steps = 3, 2
    torch.manual_seed(0)

    runs = []
    for label, sample_size in (("tiny-sd-64px", 8), ("small-sd-256px", 32)):
        if args.quick and sample_size > 8:
            continue
        device = ll.model._resolve_device(args.device)
        dtype = ll.model._resolve_dtype(args.dtype, device)
        model = ll.Model(**tiny_sd_components(sample_size=sample_size), name=label).to(device, dtype)
        runs.append(bench_model(label, model, repeats=args.repeats, steps=args.steps))
    try:
        default = ll.load(device=args.device, dtype=args.dtype)
    except ll.ModelNotFoundError as error:
        default_note = f"not measured: {error}"
    else:
        runs.append(bench_model("default", default, repeats=args.repeats, steps=args.steps))
        default_note = "measured"

    report = {
        "benchmark": "core",
        **environment(),
        "threads": torch.get_num_threads(),
        "default_model": default_note,
        "runs": runs,
    }
    print(f"{'model':16} {'encode':>9} {'decode':>9} {'unet b1':>9} {'unet b2':>9} {'ours':>9} {'pipeline':>9} {'ratio':>6}")
    for r in runs:
        g = r["generate"]
        print(f"{r['model']:16} {r['encode_b1']['median_ms']:8.2f}ms {r['decode_b1']['median_ms']:8.2f}ms "
              f"{r['unet_step_b1']['median_ms']:8.2f}ms {r['unet_step_b2']['median_ms']:8.2f}ms "
              f"{g['latentlib']['median_ms']:8.1f}ms {g['diffusers_pipeline']['median_ms']:8.1f}ms "
              f"{g['ratio_latentlib_over_pipeline']:6.3f}")
    write_report(args.out, report)
    return report


if __name__ == "__main__":
    main()
