"""The fast path's UNet step alone, per compile variant: the quick GPU experiment for issue 8's batch-2 target.

bench_fast.py measures everything (diffusers' pipeline, eager images, every figure) and then compiles again
for ``--also-autotune``; on an H200 the whole of it left 320 s for the tuned compile, which did not finish
(session 31). This script builds SD 1.5's UNet layout (random weights), times diffusers' eager UNet at each
``--batches`` size, then for each of ``--variants`` in turn accelerates the model with it (``torch.compile``
+ CUDA graphs, as ``model.accelerate()`` does on CUDA) and times the fast UNet step at each batch size, in the
order given. A variant is an autotune mode ("off", "coordinate-descent", "max-autotune"), with "+static" for
``static_shapes=True`` (each batch size compiled on its own; by default the second size recompiles with a
symbolic batch, as in bench_fast, which compiles batch 1 first). Dynamo's state is reset between variants, so
each compiles as a fresh process would. The JSON is written after every measurement (and names the shape
being compiled), so a run cut short keeps what it finished.

    python bench/bench_unet_tuning.py --device cuda --variants off+static,off --batches 1,2
    python bench/bench_unet_tuning.py --device cuda --variants coordinate-descent --batches 1,2
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
VARIANTS = MODES + tuple(f"{mode}+static" for mode in MODES)


def _listed(text: str, kind, name: str, allowed=None) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v]
    except ValueError:
        raise SystemExit(f"--{name} must be a comma-separated list, got {text!r}") from None
    if not values or (allowed is not None and any(v not in allowed for v in values)):
        raise SystemExit(f"--{name} got {text!r}; use a comma-separated list of {', '.join(map(str, allowed or ['integers >= 1']))}")
    if kind is int and any(v < 1 for v in values):
        raise SystemExit(f"--{name} got {text!r}; batch sizes are integers >= 1")
    if len(set(values)) != len(values):
        raise SystemExit(f"--{name} got {text!r}; each value once")
    return values


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--variants", default="off+static,off",
                        help=f"comma-separated, timed in this order, of: {', '.join(VARIANTS)} (default: off+static,off)")
    parser.add_argument("--batches", default="1,2", help="comma-separated UNet batch sizes, compiled in this order "
                        "(default: 1,2, as bench_fast and a live app meet them)")
    parser.add_argument("--repeats", type=int, default=50, help="timed steps per figure (default: 50)")
    parser.add_argument("--quick", action="store_true", help="tiny layout, 3 repeats: a smoke run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "unet_tuning.json"))
    args = parser.parse_args(argv)
    variants = _listed(args.variants, str, "variants", VARIANTS)
    batches = _listed(args.batches, int, "batches")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        parser.error(f"--device must be cpu or cuda, got {args.device!r}")
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
              "target_unet_step_b2_ms": TARGETS["unet_step_b2_ms"], "diffusers_ms": {}, "variants": {}}

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
    for variant in variants:
        start = time.perf_counter()
        torch._dynamo.reset()  # no compiled code or automatic-dynamic memory from the previous variant
        mode, static = variant.removesuffix("+static"), variant.endswith("+static")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            fast = model.accelerate(autotune=mode, static_shapes=static)
        run = fast._unet or (lambda x, t, text, cond, added: model.unet(x, t, encoder_hidden_states=text).sample)
        row = report["variants"][variant] = {"fast_path": fast.report(), "warmup_s": {}, "ms": {}, "vs_eager": {}}
        with torch.no_grad():
            for b, (x, t, text, _) in inputs.items():
                row["compiling"] = f"b{b}"
                save()
                shape_start = time.perf_counter()
                out = run(x, t, text, None, None)  # compiles and captures this shape
                if device.type == "cuda":
                    torch.cuda.synchronize()
                row["warmup_s"][f"b{b}"] = round(time.perf_counter() - shape_start, 1)
                row["vs_eager"][f"b{b}"] = _pixels_close(out, eager[b])
                row["ms"][f"unet_step_b{b}_ms"] = round(timed(
                    lambda x=x, t=t, text=text, run=run: run(x, t, text, None, None), device, repeats)["median_ms"], 3)
                row.pop("compiling")
                print(f"  {variant}: batch {b} {row['ms'][f'unet_step_b{b}_ms']} ms "
                      f"(warm-up {row['warmup_s'][f'b{b}']} s)", flush=True)
                save()
        row["seconds"] = round(time.perf_counter() - start, 1)
        save()
    write_report(args.out, report)
    return report


if __name__ == "__main__":
    main()
