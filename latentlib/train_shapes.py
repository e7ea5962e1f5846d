"""Train the default model's parts on the shapes world: one command per stage, seeded and resumable.

    python -m latentlib.train_shapes probe --out runs/probe            # CPU preset
    python -m latentlib.train_shapes probe --out runs/probe --resume   # continue from the last checkpoint
    python -m latentlib.train_shapes probe --out runs/probe --preset gpu --device cuda

Each stage writes into ``--out``: ``checkpoint.safetensors`` + ``checkpoint.json`` every
``--checkpoint-every`` steps (weights and optimiser state; no pickle), ``loss.csv`` (one row a logged
step), ``loss.png`` (the curve), and at the end the trained folder (``config.json`` + weights) and
``metrics.json`` from the stage's evaluation. Data is generated on the fly: step ``s`` trains on the
scenes (probe: split "all") with seeds ``s * batch .. (s + 1) * batch - 1``, so a run is a function of its
seed, preset and step count.

Stages so far: ``probe``. The VAE, text encoder and UNet stages of the default model follow.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from . import probes, shapes

__all__ = ["PRESETS", "train_probe", "main"]


@dataclass(frozen=True)
class Preset:
    steps: int
    batch: int
    lr: float
    log_every: int = 25
    checkpoint_every: int = 250


#: stage -> preset name -> settings. "cpu" fits a 2-core machine; "gpu" one GPU.
PRESETS = {
    "probe": {"cpu": Preset(steps=6000, batch=96, lr=1e-3), "gpu": Preset(steps=8000, batch=256, lr=1e-3),
              "smoke": Preset(steps=6, batch=8, lr=1e-3, log_every=2, checkpoint_every=3)},
}


def _batch(step: int, batch: int, seed: int, *, augment: bool = True):
    """Scenes for one step, as pixels (B, 3, 64, 64) in [0, 1] and label dicts; a function of (step, seed)."""
    rng = torch.Generator().manual_seed(seed * 1_000_003 + step)
    # The probe is an instrument: it sees every (shape, colour) pair, held-out ones included.
    images, labels, _ = shapes.make_dataset(batch, "all", start=step * batch)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    if augment:  # mild photometric noise so the probe also reads slightly-off generated images
        gain = 1 + 0.06 * (torch.rand(batch, 1, 1, 1, generator=rng) - 0.5)
        sigma = 0.03 * torch.rand(batch, 1, 1, 1, generator=rng)
        pixels = (pixels * gain + sigma * torch.randn(pixels.shape, generator=rng)).clamp(0, 1)
    return pixels, labels


def _write_text(path: Path, text: str) -> None:
    """Atomic: a temporary file, then a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _truncate_log(path: Path, start: int) -> None:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    with open(path.with_name(path.name + ".tmp"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["step"]) < start)
    path.with_name(path.name + ".tmp").replace(path)


def _save_checkpoint(out: Path, step: int, net, opt, extra: dict) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    state = opt.state_dict()
    for index, slots in state["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {"step": step, "param_groups": state["param_groups"], **extra}
    tmp = out / "checkpoint.safetensors.tmp"
    save_file(tensors, tmp)
    tmp.replace(out / "checkpoint.safetensors")
    _write_text(out / "checkpoint.json", json.dumps(meta, indent=1))


def _load_checkpoint(out: Path, net, opt) -> dict:
    tensors = load_file(out / "checkpoint.safetensors")
    meta = json.loads((out / "checkpoint.json").read_text())
    net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {"state": {}, "param_groups": meta["param_groups"]}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, slot = key.split(".", 2)
            state["state"].setdefault(int(index), {})[slot] = value
    opt.load_state_dict(state)
    return meta


def _plot(csv_path: Path, png_path: Path, title: str) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "loss.png not drawn: matplotlib is not installed (pip install 'latentlib[train]')"
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, [float(r["loss"]) for r in rows], label="loss")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, metadata={"Software": None})
    plt.close(fig)
    return f"wrote {png_path}"


def _provenance(args, preset: Preset, seconds: float, device: torch.device) -> dict:
    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=here).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", ".", ":!weights"],
                                    capture_output=True, text=True, check=True, cwd=here).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return {
        "command": "python -m latentlib.train_shapes " + " ".join(sys.argv[1:] if args.argv is None else args.argv),
        "git_commit": commit, "git_uncommitted_changes": dirty, "seed": args.seed, "preset": args.preset, "settings": asdict(preset),
        "seconds": round(seconds, 1), "device": str(device),
        "hardware": torch.cuda.get_device_name(device) if device.type == "cuda" else
        f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
    }


def train_probe(args) -> dict:
    """Train a :class:`~latentlib.probes.ShapesProbe`; write it and its metrics under ``args.out``."""
    preset = PRESETS["probe"][args.preset]
    steps = args.steps or preset.steps
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "probe.safetensors").exists() and not args.overwrite:
        raise SystemExit(f"{out / 'probe.safetensors'} exists; pass --overwrite to replace it.")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    net = probes.ShapesProbe().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=preset.lr, weight_decay=1e-4)
    start, elapsed = 0, 0.0
    if args.resume and (out / "checkpoint.json").exists():
        meta = _load_checkpoint(out, net, opt)
        start, elapsed = meta["step"], meta.get("seconds", 0.0)
        _truncate_log(out / "loss.csv", start)  # rows logged after the checkpoint are trained again
        print(f"resuming from step {start}")
    elif (out / "loss.csv").exists() and not args.overwrite:
        raise SystemExit(f"{out} holds an earlier run; pass --resume to continue it or --overwrite to start again.")
    log_mode = "a" if start else "w"
    schedule = lambda s: preset.lr * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))  # noqa: E731
    began = time.perf_counter()
    with open(out / "loss.csv", log_mode, newline="") as log:
        writer = None
        bar = tqdm(range(start, steps), desc="probe", initial=start, total=steps)
        for step in bar:
            for group in opt.param_groups:
                group["lr"] = schedule(step)
            pixels, labels = _batch(step, preset.batch, args.seed)
            loss, parts = probes.probe_loss(net(pixels.to(device)), {k: v.to(device) for k, v in
                                                                      probes.probe_targets(labels).items()})
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % preset.log_every == 0 or step == steps - 1:
                row = {"step": step, "loss": loss.item(), "lr": schedule(step), **parts}
                if writer is None:
                    writer = csv.DictWriter(log, fieldnames=["step", "loss", "lr", "present", "background", "shape",
                                                             "color", "size", "x", "y", "rotation"])
                    if log_mode == "w":
                        writer.writeheader()
                writer.writerow(row)
                log.flush()
                bar.set_postfix(loss=f"{loss.item():.4f}")
            stopping = args.stop_after is not None and step + 1 == args.stop_after and step + 1 < steps
            if ((step + 1) % preset.checkpoint_every == 0 and step + 1 < steps) or stopping:
                _save_checkpoint(out, step + 1, net, opt, {"seconds": elapsed + time.perf_counter() - began})
            if stopping:
                bar.close()
                print(f"stopped after step {step + 1} as asked; continue with --resume")
                return {"stopped_at": step + 1}
    seconds = elapsed + time.perf_counter() - began
    net = net.cpu().eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, out / "probe.safetensors.tmp")
    (out / "probe.safetensors.tmp").replace(out / "probe.safetensors")
    _write_text(out / "config.json", json.dumps(net.config, indent=1))
    print(_plot(out / "loss.csv", out / "loss.png", "shapes probe"))
    metrics = {
        "test": probes.evaluate_probe(probes.Probe(net), n=args.eval_n, split="test"),
        "heldout": probes.evaluate_probe(probes.Probe(net), n=max(args.eval_n // 4, 1), split="heldout"),
        "provenance": _provenance(args, preset, seconds, device),
    }
    _write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    print(json.dumps({k: metrics[k] for k in ("test", "heldout")}, indent=1))
    for leftover in ("checkpoint.safetensors", "checkpoint.json"):
        (out / leftover).unlink(missing_ok=True)
    return metrics


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m latentlib.train_shapes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=sorted(PRESETS), help="what to train")
    parser.add_argument("--out", required=True, help="run folder (created); the trained files land here")
    parser.add_argument("--preset", default="cpu", help="cpu (2 cores), gpu, or smoke (seconds, for tests)")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's step count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-n", type=int, default=2000, help="test scenes for the final evaluation")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop after this many steps, keeping a checkpoint (a time-boxed run); --resume goes on")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.preset not in PRESETS[args.stage]:
        parser.error(f"--preset {args.preset!r} is not one of {', '.join(PRESETS[args.stage])} for {args.stage}")
    np.seterr(all="ignore")
    return {"probe": train_probe}[args.stage](args)


if __name__ == "__main__":
    main()
