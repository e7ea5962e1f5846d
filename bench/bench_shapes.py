"""Default-model ("shapes") speed on CPU: one image at the default settings and an 8-step preview.

Prints a table and writes JSON (default: bench/results/shapes.json). The issue's bars: one image
<= 300 ms and an 8-step preview <= 100 ms, CPU, 2 threads, float32. Also times the parts of a step.

    python bench/bench_shapes.py                  # 2 threads, 25 repeats
    python bench/bench_shapes.py --quick          # smoke run
    python bench/bench_shapes.py --threads 1
    python bench/bench_shapes.py --fast           # also the CPU fast path (torch.compile), interleaved with eager

``--fast`` times the same generations with ``model.accelerate(compile=True)`` (Inductor on the CPU; needs a
C++ compiler, and falls back to eager with a note without one), alternating eager and fast rounds so that
a drift in this shared machine's speed hits both alike. The first calls compile (reported as warm-up).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import latentlib as ll
from latentlib.evaluate_shapes import BARS, generation_speed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import environment, write_report


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(times), 2)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="diffusers folder (default: the shipped default model)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--quick", action="store_true", help="3 repeats: a smoke run")
    parser.add_argument("--fast", action="store_true", help="also time the CPU fast path (compile), interleaved")
    parser.add_argument("--rounds", type=int, default=None,
                        help="--fast: alternating eager/fast rounds (default: one call per side and round)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "shapes.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 3
    torch.set_num_threads(args.threads)
    model = ll.load(args.model)
    parts = {}
    with torch.inference_mode():
        emb = model.embed(["a red circle", ""])
        context = emb.embeds
        z = torch.randn(1, 4, 8, 8)
        parts["text_encoder_ms"] = _median_ms(lambda: model.embed("a small red circle in the top left"), args.repeats)
        parts["unet_step_b1_ms"] = _median_ms(lambda: model.unet(z, 500, context[:1]), args.repeats)
        parts["unet_step_b2_ms"] = _median_ms(lambda: model.unet(z.expand(2, -1, -1, -1), 500, context), args.repeats)
        parts["vae_decode_b1_ms"] = _median_ms(lambda: model.decode(z, output="pt"), args.repeats)
    speed = generation_speed(model, repeats=args.repeats, threads=args.threads,
                             fast_model=ll.load(args.model) if args.fast else None, rounds=args.rounds)
    report = {
        "benchmark": "shapes",
        **environment(),
        "settings": {"default": "20 steps, guidance 5, the model's scheduler", "preview": "8 steps, guidance 5",
                     "preview_no_cfg": "8 steps, guidance 1"},
        "parts": parts, **speed,
        "bars": {key: bar for key, (bar, _, _) in BARS.items() if key.startswith("speed_") and key in speed},
    }
    for key, value in {**parts, **{k: v for k, v in speed.items() if k.endswith("_ms")}}.items():
        print(f"{key:28} {'n/a' if value is None else f'{value:8.1f} ms'}")
    if args.fast:
        print(f"fast path: model.accelerate(compile=True), warm-up {speed['fast_path_warmup_s']} s, medians over "
              f"{args.rounds or args.repeats} alternating eager/fast rounds; notes: {speed['fast_path_notes'] or 'none'}")
    write_report(args.out, report)
    return report


if __name__ == "__main__":
    main()
