"""Read a bench_unet_tuning.py JSON and print, as shell assignments for gpu_fast.sh, the compile variant that
ran the UNet step fastest at one batch size (2 by default: the CFG step of issue 8's target).

The GPU budget fits a tuning run and a full benchmark only as two calls on the same warm machine, one right
after the other; ``TUNED_FROM=... bash bench/gpu_fast.sh`` runs this between them, so the second call needs no
one to read the first's numbers in the seconds before the machine is given back.

A variant counts only when it timed that batch size (an error after it, e.g. at a larger batch, does not void
the figure) and its output stayed close to diffusers' eager UNet's, never NaN: within ``--tolerance``, or
within 10 times the default variant's difference (the closest variant's without one; random weights can give
large outputs, whose fp16 rounding alone exceeds a fixed bound). The default variant ("off": automatic dynamic
shapes, PyTorch's attention, untuned) is kept unless another beats it by more than ``--margin`` (the run-to-run noise of a
median); when "off" was not measured, the fastest variant is taken. Prints a comment line saying why, then
``AUTOTUNE=...``, ``STATIC=...``, ``ATTENTION=...`` and ``INDUCTOR=...`` (empty when off), all four, so nothing
the caller had set mixes in; exits 1, printing nothing to stdout, when no variant qualifies.

    python3 bench/pick_tuning.py bench/results/gpu-tuning-last/unet_tuning.json
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

# bench_unet_tuning's modes, attention kernels and Inductor-option tokens as bench_fast's --inductor (a test checks
# they agree; importing it would import torch)
MODES = ("off", "coordinate-descent", "max-autotune")
KERNELS = ("cudnn", "flash", "efficient", "math")
INDUCTOR = {"combo": "combo_kernels=1"}


def tuning_of(name: str) -> dict:
    """A canonical variant name ("off+static+cudnn") as all four of gpu_fast.sh's variables (empty: not set), so
    what the caller had set does not mix in."""
    mode, *extras = name.split("+")
    kernels = [e for e in extras if e in KERNELS]
    if mode not in MODES or len(kernels) > 1 or any(e not in ("static", *KERNELS, *INDUCTOR) for e in extras):
        raise ValueError(f"{name!r} is not a variant: a mode ({', '.join(MODES)}), then optionally +static, one "
                         f"of {', '.join('+' + k for k in KERNELS)}, and {', '.join('+' + k for k in INDUCTOR)}")
    return {"AUTOTUNE": mode, "STATIC": "1" if "static" in extras else "", "ATTENTION": kernels[0] if kernels else "",
            "INDUCTOR": ",".join(INDUCTOR[e] for e in extras if e in INDUCTOR)}


def pick(report: dict, *, batch: int = 2, margin: float = 0.01, tolerance: float = 0.02) -> tuple[str, str]:
    """(the chosen variant, why), from ``report["variants"]``; ValueError when none qualifies."""
    key, measured, refused = f"unet_step_b{batch}_ms", {}, []
    rows = report.get("variants", {})
    closeness = {name: row.get("vs_eager", {}).get(f"b{batch}", {}).get("max_abs") for name, row in rows.items()}
    finite = {name: c for name, c in closeness.items() if isinstance(c, (int, float)) and math.isfinite(c)}
    # a random-weight UNet's outputs can be large, so fp16 rounding alone may exceed a fixed bound: a variant is
    # refused when it is off by more than the tolerance and by more than 10 times the default's difference (the
    # closest variant's when the default has none); NaN or inf is always refused
    reference = finite.get("off", min(finite.values(), default=None))
    bound = tolerance if reference is None else max(tolerance, 10 * reference)
    for name, row in rows.items():
        ms, close = row.get("ms", {}).get(key), closeness[name]
        if ms is None:
            reason = "skipped" if row.get("skipped") else "failed" if row.get("error") else f"no batch-{batch} figure"
            refused.append(f"{name}: {reason}")
        elif name not in finite or close > bound:
            refused.append(f"{name}: output off eager by {close} (bound {bound:g})")
        else:
            measured[name] = ms
    if not measured:
        raise ValueError(f"no variant measured the batch-{batch} step within tolerance ({'; '.join(refused) or 'none ran'})")
    best = min(measured, key=measured.get)
    figures = ", ".join(f"{name} {ms} ms" for name, ms in sorted(measured.items(), key=lambda kv: kv[1]))
    if "off" in measured and best != "off" and measured[best] > measured["off"] * (1 - margin):
        return "off", f"kept off: {best} is within {margin:.0%} of it at batch {batch} ({figures})"
    return best, f"picked {best} at batch {batch} ({figures})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", help="bench_unet_tuning.py's JSON")
    parser.add_argument("--batch", type=int, default=None,
                        help="the batch size that decides (default: the report's decide_batch, else 2)")
    parser.add_argument("--margin", type=float, default=0.01,
                        help="how much faster than 'off' another variant must be, as a fraction (default: 0.01)")
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="|difference| from the eager UNet's output always accepted (default: 0.02)")
    args = parser.parse_args(argv)
    if args.batch is not None and args.batch < 1:
        parser.error(f"--batch must be at least 1, got {args.batch}")
    if not 0 <= args.margin < 1:
        parser.error(f"--margin must be in [0, 1), got {args.margin}")
    if not args.tolerance > 0:
        parser.error(f"--tolerance must be > 0, got {args.tolerance}")
    path = Path(args.report)
    if not path.is_file():
        print(f"pick_tuning: {path} does not exist (did the tuning run write it?)", file=sys.stderr)
        return 1
    try:
        report = json.loads(path.read_text())
        batch = args.batch if args.batch is not None else report.get("decide_batch", 2)
        variant, why = pick(report, batch=batch, margin=args.margin, tolerance=args.tolerance)
        assignments = tuning_of(variant)
    except ValueError as error:  # json's errors are ValueErrors too
        print(f"pick_tuning: {error}", file=sys.stderr)
        return 1
    print("# " + why.replace("\n", " "))
    for name, value in assignments.items():  # quoted: gpu_fast.sh evaluates these lines
        print(f"{name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
