"""The fast path's UNet step alone, per kernel-tuning mode: the quick GPU experiment for issue 8's batch-2 target.

bench_fast.py measures everything (diffusers' pipeline, eager images, every figure) and then compiles again
for ``--also-autotune``; on an H200 the whole of it left 320 s for the tuned compile, which did not finish
(session 31). This script builds SD 1.5's UNet layout (random weights), times diffusers' eager UNet at each
``--batches`` size, then for each ``--autotune`` mode in turn accelerates the model with it (``torch.compile``
+ CUDA graphs, as ``model.accelerate()`` does on CUDA) and times the fast UNet step at each batch size. The JSON
is written after every measurement, so a run cut short keeps what it finished.

    python bench/bench_unet_tuning.py --device cuda --autotune coordinate-descent,off --batches 2,1
    python bench/bench_unet_tuning.py --quick                     # CPU, tiny layout: the smoke run the tests do

On the CPU compile is off by default (and needs a C++ compiler), so there the fast UNet is the eager one and
the figures say nothing about GPU speed. Writes JSON (default bench/results/unet_tuning.json).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import environment, timed, write_report
from bench_fast import TARGETS, _pixels_close, _sd15, _unet_inputs

MODES = ("off", "coordinate-descent", "max-autotune")


def _listed(text: str, kind, name: str, allowed=None) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v]
    except ValueError:
        raise SystemExit(f"--{name} must be a comma-separated list, got {text!r}") from None
    if not values or (allowed is not None and any(v not in allowed for v in values)):
        raise SystemExit(f"--{name} got {text!r}; use a comma-separated list of {', '.join(map(str, allowed or ['integers >= 1']))}")
    if kind is int and any(v < 1 for v in values):
        raise SystemExit(f"--{name} got {text!r}; batch sizes are integers >= 1")
    return values


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--autotune", default="coordinate-descent,off",
                        help="comma-separated modes, timed in this order (default: coordinate-descent,off)")
    parser.add_argument("--batches", default="2,1", help="comma-separated UNet batch sizes (default: 2,1)")
    parser.add_argument("--repeats", type=int, default=50, help="timed steps per figure (default: 50)")
    parser.add_argument("--quick", action="store_true", help="tiny layout, 3 repeats: a smoke run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "unet_tuning.json"))
    args = parser.parse_args(argv)
    modes = _listed(args.autotune, str, "autotune", MODES)
    batches = _listed(args.batches, int, "batches")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but CUDA is not available here; use --device cpu.")
    repeats = 3 if args.quick else args.repeats
    began = time.perf_counter()
    torch.manual_seed(0)
    full = not args.quick
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    model = ll.Model(**_sd15(device, full), name="sd15-full" if full else "sd15-tiny").to(device, dtype)
    inputs = {b: _unet_inputs(model, b) for b in batches}
    report = {"benchmark": "unet_tuning", **environment(), "device": str(device), "model": model.name,
              "dtype": str(dtype).replace("torch.", ""), "quick": args.quick, "repeats": repeats,
              "target_unet_step_b2_ms": TARGETS["unet_step_b2_ms"], "diffusers_ms": {}, "modes": {}}

    def save():
        report["seconds"] = round(time.perf_counter() - began, 1)
        write_report(args.out, report, announce=False)

    eager = {}
    with torch.no_grad():
        for b, (x, t, text, _) in inputs.items():
            eager[b] = model.unet(x, t, encoder_hidden_states=text).sample
            report["diffusers_ms"][f"unet_step_b{b}_ms"] = round(timed(
                lambda x=x, t=t, text=text: model.unet(x, t, encoder_hidden_states=text), device, repeats)["median_ms"], 3)
    print(f"  diffusers (eager): {report['diffusers_ms']}", flush=True)
    save()
    for mode in modes:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            fast = model.accelerate(autotune=mode)
        run = fast._unet or (lambda x, t, text, cond, added: model.unet(x, t, encoder_hidden_states=text).sample)
        row = report["modes"][mode] = {"fast_path": fast.report(), "warmup_s": {}, "ms": {}, "vs_eager": {}}
        with torch.no_grad():
            for b, (x, t, text, _) in inputs.items():
                shape_start = time.perf_counter()
                out = run(x, t, text, None, None)  # compiles and captures this shape
                if device.type == "cuda":
                    torch.cuda.synchronize()
                row["warmup_s"][f"b{b}"] = round(time.perf_counter() - shape_start, 1)
                row["vs_eager"][f"b{b}"] = _pixels_close(out, eager[b])
                row["ms"][f"unet_step_b{b}_ms"] = round(timed(
                    lambda x=x, t=t, text=text, run=run: run(x, t, text, None, None), device, repeats)["median_ms"], 3)
                print(f"  {mode}: batch {b} {row['ms'][f'unet_step_b{b}_ms']} ms "
                      f"(warm-up {row['warmup_s'][f'b{b}']} s)", flush=True)
                save()
        row["seconds"] = round(time.perf_counter() - start, 1)
        save()
    write_report(args.out, report)
    return report


if __name__ == "__main__":
    main()
