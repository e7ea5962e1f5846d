"""The live frame's host work: what latentlib's loop costs around the networks (issue 8).

On a GPU the fast path replays the UNet and the decoder as CUDA graphs; what is left of a live frame is
Python and kernel launches around them (checks, caches, the scheduler, the decode's post-processing),
which the GPU waits on. This bench runs ``model.generate`` with the fast path's UNet and decoder
replaced by stand-ins that cost next to nothing (the UNet returns a copy of its input, the decoder a
fixed image), so what it times is that host work alone, for SD 1.5's layout (UNet, VAE, TAESD-shaped
preview decoder, DPM++ 2M) by default.

    python bench/bench_host.py                  # CPU, SD 1.5 layout (builds it: ~4 GiB, ~20 s)
    python bench/bench_host.py --device cuda    # the same on a GPU machine's host
    python bench/bench_host.py --quick          # tiny layout, 3 repeats: the smoke run the tests do
    python bench/bench_host.py --profile 15     # also print the 15 costliest calls (cProfile)

Writes JSON (default bench/results/host.json). No network runs, so the figures do not depend on the GPU:
set them beside bench_fast's live frame to see how much of it is host work.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import latentlib as ll

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import environment, timed, write_report
from bench_fast import PROMPT, _preview_decoder, _sd15

#: (label, steps, guidance, decoder) of each timed generation
FRAMES = (("live_frame", 1, 0.0, "preview"), ("live_4_steps", 4, 0.0, "preview"),
          ("image_25_steps_cfg", 25, 7.5, "full"))


def stub_networks(model) -> dict:
    """Swap the fast path's UNet and decoders for stand-ins that do no network arithmetic; returns their call
    counts (``{"unet": n, "decoder": m}``), which show that every step and decode went through them."""
    from diffusers import DPMSolverMultistepScheduler

    fast = model.accelerate(compile=False, cuda_graphs=False)
    model.scheduler = DPMSolverMultistepScheduler.from_config(model.scheduler.config)  # bench_fast's sampler
    calls = {"unet": 0, "decoder": 0, "first_unet_at": None, "decoded_at": None}

    def unet_stand_in(sample, t, text, timestep_cond=None, added=None):  # a graph replay's host cost: copies
        calls["unet"] += 1
        if calls["first_unet_at"] is None:
            calls["first_unet_at"] = time.perf_counter()
        return sample.clone()

    def decoder_stand_in(z):
        calls["decoder"] += 1
        h, w = z.shape[-2] * model.vae_scale_factor, z.shape[-1] * model.vae_scale_factor
        image = torch.zeros(z.shape[0], 3, h, w, device=z.device, dtype=z.dtype)
        calls["decoded_at"] = time.perf_counter()
        return image

    fast._unet = unet_stand_in
    fast._decode = {"full": decoder_stand_in, "preview": decoder_stand_in}
    return calls


def frame_phases(model, calls: dict, device: torch.device, repeats: int) -> dict:
    """Where a live frame's host work falls (medians over ``repeats`` frames, ms).

    On a GPU the host queues the UNet's graph and goes on while it runs, so work between the UNet's launch and
    the decode is hidden behind the UNet; what is not hidden is the work before the UNet's launch
    (``before_unet``: checks, caches, the scheduler's set-up, while the GPU is idle) and after the decoder
    returns (``after_decode``: the copy to the host waits for the GPU, then the output's conversion).
    ``between`` is the rest. Frames are asked for as float tensors (``output="pt"``, as bench_fast's
    ``live_frame_ms``); the lab's PIL frames on a GPU are rounded to 8 bits there, which changes ``after_decode``.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    phases = {"before_unet": [], "between": [], "after_decode": []}
    for _ in range(repeats):
        calls["first_unet_at"] = None
        sync()
        start = time.perf_counter()
        model.generate(PROMPT, seed=0, steps=1, guidance=0.0, decoder="preview", output="pt", progress=False)
        end = time.perf_counter()
        phases["before_unet"].append(calls["first_unet_at"] - start)
        phases["between"].append(calls["decoded_at"] - calls["first_unet_at"])
        phases["after_decode"].append(end - calls["decoded_at"])
    return {k: round(statistics.median(v) * 1e3, 4) for k, v in phases.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--repeats", type=int, default=200, help="timed frames per figure (default: 200)")
    parser.add_argument("--quick", action="store_true", help="tiny layout, 3 repeats: a smoke run")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile 200 live frames and print the N costliest calls (default: 0, off)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "host.json"), help="JSON to write")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.profile < 0:
        parser.error(f"--profile must be 0 (off) or a number of calls to list, got {args.profile}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but CUDA is not available here; use --device cpu.")
    full = not args.quick
    repeats = 3 if args.quick else args.repeats
    began = time.perf_counter()
    torch.manual_seed(0)
    model = ll.Model(**_sd15(device, full), name="sd15-full" if full else "sd15-tiny")
    model.set_preview_decoder(_preview_decoder(full))
    model.to(device, torch.float16 if device.type == "cuda" else torch.float32)
    calls = stub_networks(model)
    figures = {}
    for label, steps, guidance, decoder in FRAMES:
        def frame(steps=steps, guidance=guidance, decoder=decoder):
            return model.generate(PROMPT, seed=0, steps=steps, guidance=guidance, decoder=decoder, output="pt",
                                  progress=False)

        figures[f"{label}_ms"] = {k: round(v, 4) if isinstance(v, float) else v
                                  for k, v in timed(frame, device, repeats, warmup=5).items()}
        per_step = figures[f"{label}_ms"]["median_ms"] / steps
        print(f"  {label:22} {figures[f'{label}_ms']['median_ms']:8.3f} ms host work ({per_step:.3f} ms a step)")
    figures["live_frame_phases_ms"] = frame_phases(model, calls, device, repeats)
    print("  live_frame phases: " + ", ".join(f"{k} {v:.3f} ms" for k, v in figures["live_frame_phases_ms"].items()))
    report = {"benchmark": "host", **environment(), "threads": torch.get_num_threads(), "device": str(device),
              "model": model.name, "size": list(model.default_size), "quick": args.quick,
              "what": "model.generate with the fast path's UNet and decoders replaced by stand-ins: the host work "
                      "around the networks (median of --repeats frames after 5 warm-up frames)",
              "figures": figures,
              "stand_in_calls": {k: calls[k] for k in ("unet", "decoder")}, "seconds": round(time.perf_counter() - began, 1)}
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(200):
            model.generate(PROMPT, seed=0, steps=1, guidance=0.0, decoder="preview", output="pt", progress=False)
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(args.profile)
        print(text.getvalue())
        report["profile_live_frame"] = text.getvalue()
    write_report(args.out, report)
    return report


if __name__ == "__main__":
    main()
