"""Train the default model's parts on the shapes world: one command per stage, seeded and resumable.

    python -m latentlib.train_shapes all --out runs/shapes                  # vae, text, unet, model, probe (CPU preset)
    python -m latentlib.train_shapes vae --out runs/shapes/vae              # one stage at a time:
    python -m latentlib.train_shapes decoder --out runs/shapes/decoder --vae runs/shapes/vae
    python -m latentlib.train_shapes text --out runs/shapes/text
    python -m latentlib.train_shapes unet --out runs/shapes/unet --vae runs/shapes/vae --text runs/shapes/text
    python -m latentlib.train_shapes assemble --out runs/shapes/model --vae runs/shapes/decoder \
        --text runs/shapes/text --unet runs/shapes/unet
    python -m latentlib.train_shapes probe --out runs/shapes/probe
    python -m latentlib.train_shapes unet ... --resume                      # continue from the last checkpoint
    python -m latentlib.train_shapes all --out runs/shapes --preset gpu --device cuda

Each stage writes into its ``--out``: ``checkpoint.safetensors`` + ``checkpoint.json`` every
``checkpoint_every`` steps (weights and optimiser state; no pickle), ``loss.csv`` (one row a logged
step), ``loss.png`` (the curve), the trained weights, and ``metrics.json`` (the stage's evaluation and
how it was made: command, git commit, seed, time, hardware). Data is generated on the fly from seeds,
so a run is a function of its seed, preset and step count.

Stages: ``vae`` (AutoencoderKL, f=8), ``decoder`` (fine-tunes the VAE's decoder on posterior-mean
latents; the encoder, so every latent, stays the same), ``text`` (CLIPTextModel + word-level tokenizer,
trained to read every factor a caption names), ``unet`` (UNet2DConditionModel on the VAE's latents,
conditioned on the text encoder; EMA weights), ``assemble`` (the diffusers folder, checking that its VAE
encodes the latents the UNet learned), ``probe`` (the factor probe), ``all`` (vae, text, unet, assemble,
probe in order; ``--decoder`` adds the decoder stage, as the shipped model was made). On 2 CPU cores the
cpu preset took 29 min (vae: 4,500 steps) + 3 (text) + 87 (unet: 15,000 steps with 10% caption dropout),
both networks' forward pass in bfloat16, for the model (sessions 23-24; the decoder stage would add about 10),
then about 26 min for the probe; that model met every bar, the empty prompt by 0.3 points (90.3%; 90.0%
on 2,000 other seeds) (``docs/cpu-preset-run/MODEL_CARD.md``).
On one H200 the gpu preset (vae: 4,500 steps, unet: 9,000) took 220 s (vae) + 17 (text) + 331 (unet,
over the two calls a device budget split it into) of wall time for the model, 9.5 min, and 165 s for the
probe: about 12 min in all (session 28, ``docs/gpu-preset-run/``). Version 9, whose VAE, text encoder and
UNet the shipped model (version 10) continues, was made before the preset was shortened, with
``--decoder --vae-steps 6000 --unet-steps 12000`` (207 s + 94 (decoder) + 22 + about 380 s). Beside a GPU,
worker processes render the scenes and captions ahead of each step (``--workers``) and the vae, decoder and
unet networks run compiled (``--compile``); neither changes what is trained on.
The model's quality bars are measured by ``python -m latentlib.evaluate_shapes``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from . import probes, shapes, shapes_model

__all__ = ["PRESETS", "main", "train_probe", "train_text", "train_unet", "train_vae"]


@dataclass(frozen=True)
class Preset:
    steps: int
    batch: int
    lr: float
    log_every: int = 25
    checkpoint_every: int = 250
    warmup: int = 0  # linear warm-up steps (capped at a tenth of the run), then cosine decay
    clip: float | None = None  # gradient-norm clipping
    object_weight: float = 0.0  # vae/decoder: extra loss weight on the object's pixels (0 = plain mean)
    amp: str = "off"  # vae, decoder, unet: "bf16" runs the forward pass under bfloat16 autocast (--amp overrides)
    caption_dropout: float = 0.0  # unet: a further share of object scenes' captions made "" (--caption-dropout overrides)


_SMOKE = Preset(steps=6, batch=8, lr=1e-3, log_every=2, checkpoint_every=3)
#: stage -> preset name -> settings. "cpu" fits a 2-core machine (two hours for vae + text + unet, measured);
#: "gpu" one GPU (about 12 minutes on an H200, probe included: 9.5 for the model); "smoke" seconds, for tests.
PRESETS = {
    "vae": {"cpu": Preset(steps=4500, batch=32, lr=2e-3, warmup=100, clip=1.0, object_weight=9.0, amp="bf16"),
            "gpu": Preset(steps=4500, batch=128, lr=1e-3, warmup=100, clip=1.0, object_weight=9.0),
            "smoke": replace(_SMOKE, warmup=100, clip=1.0, object_weight=9.0)},
    "decoder": {"cpu": Preset(steps=1500, batch=32, lr=5e-4, warmup=50, clip=1.0, object_weight=9.0),
                "gpu": Preset(steps=3000, batch=128, lr=5e-4, warmup=50, clip=1.0, object_weight=9.0),
                "smoke": replace(_SMOKE, warmup=50, clip=1.0, object_weight=9.0)},
    "text": {"cpu": Preset(steps=1500, batch=256, lr=1e-3, warmup=100, clip=1.0),
             "gpu": Preset(steps=1500, batch=256, lr=1e-3, warmup=100, clip=1.0),
             "smoke": replace(_SMOKE, warmup=100, clip=1.0)},
    "unet": {"cpu": Preset(steps=15_000, batch=128, lr=1e-3, checkpoint_every=500, warmup=100, clip=1.0, amp="bf16",
                           caption_dropout=0.1),
             "gpu": Preset(steps=9000, batch=512, lr=1e-3, checkpoint_every=1000, warmup=100, clip=1.0),
             "smoke": replace(_SMOKE, warmup=100, clip=1.0)},
    "probe": {"cpu": Preset(steps=6000, batch=96, lr=1e-3), "gpu": Preset(steps=8000, batch=256, lr=1e-3),
              "smoke": _SMOKE},
}
#: Scenes whose latents the unet stage pre-computes (encoded once with the trained VAE).
UNET_SCENES = {"cpu": 60_000, "gpu": 200_000, "smoke": 64}


def _probe_batch(step: int, batch: int, seed: int, *, augment: bool = True, hue_spread: float = 0.0):
    """Scenes for one step, as pixels (B, 3, 64, 64) in [0, 1] and label dicts; a function of (step, seed)."""
    rng = torch.Generator().manual_seed(seed * 1_000_003 + step)
    # The probe is an instrument: it sees every (shape, colour) pair, held-out ones included.
    images, labels, _ = shapes.make_dataset(batch, "all", start=step * batch, hue_spread=hue_spread)
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
    """Draw the loss curve of ``csv_path`` (log scale)."""
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


def _git_state() -> tuple[str | None, bool | None]:
    """(commit, whether latentlib/ has uncommitted changes) of the code as it is now."""
    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=here).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", ".", ":!weights"],
                                    capture_output=True, text=True, check=True, cwd=here).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return commit, dirty


def _provenance(args, preset: Preset, seconds: float, device: torch.device) -> dict:
    # main() records the git state when the run starts: provenance names the code that ran, not whatever
    # was committed while it trained.
    commit, dirty = getattr(args, "git_at_start", None) or _git_state()
    return {
        "command": "python -m latentlib.train_shapes " + " ".join(sys.argv[1:] if args.argv is None else args.argv),
        "git_commit": commit, "git_uncommitted_changes": dirty, "seed": args.seed, "preset": args.preset,
        # the preset's settings as they ran: a --steps on the command line replaces the preset's step count
        "settings": {**asdict(preset), **({"steps": args.steps} if getattr(args, "steps", None) else {})},
        "seconds": round(seconds, 1), "device": str(device),
        "hardware": torch.cuda.get_device_name(device) if device.type == "cuda" else
        f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
        "torch": torch.__version__, "workers": _workers(args), "compile": getattr(args, "compile", "auto"),
        "hue_spread": _spread(args),
    }


def _spread(args) -> float:
    """The world's ``hue_spread`` this run trains on (:func:`latentlib.shapes.sample_scene`)."""
    return float(getattr(args, "hue_spread", None) or 0.0)


def _stage(stage: str, args, final: str) -> tuple[Preset, int, Path]:
    """A stage's preset, step count and run folder (checked: no finished or earlier run is overwritten)."""
    preset = PRESETS[stage][args.preset]
    if getattr(args, "lr", None) is not None:  # recorded: _provenance writes the preset as it ran
        preset = replace(preset, lr=args.lr)
    # `all` hands every stage the same options: each stage records only the ones it uses
    if getattr(args, "amp", None) is not None and stage in ("vae", "decoder", "unet"):
        preset = replace(preset, amp=args.amp)
    if getattr(args, "caption_dropout", None) is not None and stage == "unet":
        preset = replace(preset, caption_dropout=args.caption_dropout)
    out = Path(args.out)
    _prepare_out(out, final, args)
    return preset, args.steps or preset.steps, out


def _prepare_out(out: Path, final: str, args) -> None:
    out.mkdir(parents=True, exist_ok=True)
    interrupted = args.resume and not (out / "metrics.json").exists()  # stopped after saving, before metrics
    if (out / final).exists() and not args.overwrite and not interrupted:
        raise SystemExit(f"{out / final} exists; pass --overwrite to replace it.")
    if (out / "loss.csv").exists() and not args.resume and not args.overwrite:
        raise SystemExit(f"{out} holds an earlier run; pass --resume to continue it or --overwrite to start again.")


def _workers(args) -> int:
    """Data worker processes: ``--workers``, or automatically none on the CPU (the 2-core machine's cores
    are busy training) and up to 12 beside a GPU (rendering scenes in Python is what a GPU step waits on)."""
    if getattr(args, "workers", None) is not None:
        return args.workers
    if torch.device(args.device).type == "cpu":
        return 0
    return max(0, min(12, (os.cpu_count() or 1) - 2))


def _prefetch(make, items, workers: int, *, pin: bool = False):
    """``make(item)`` for each of ``items`` in order, built ahead in ``workers`` processes (0: here, lazily).

    ``make`` must be a function of its item alone (its own seeded generators, no global random state), so
    the results are the same whatever the number of workers.
    """
    if workers == 0:
        yield from (make(item) for item in items)
        return
    from torch.utils.data import DataLoader, Dataset

    # Forked workers tokenize too: a Rust tokenizer that ran threads before the fork can deadlock in them.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    class _Items(Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            return make(items[i])

    yield from DataLoader(_Items(), batch_size=None, shuffle=False, num_workers=workers, pin_memory=pin,
                          prefetch_factor=4, persistent_workers=False, multiprocessing_context="fork")


def _to(batch, device):
    """Tensors in (nested) tuples/dicts -> ``device``; anything else unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple | list):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


@contextlib.contextmanager
def _compiled(modules: list[torch.nn.Module], enabled: bool):
    """Inside: ``modules`` run compiled (``torch.compile``, in place, so names and state dicts are unchanged);
    afterwards eager again, so the stage's evaluation and saving see plain modules."""
    if not enabled:
        yield
        return
    for m in modules:
        m.compile(dynamic=False)
    try:
        yield
    finally:
        for m in modules:
            m._compiled_call_impl = None  # what nn.Module.compile set; None = eager


def _compile_enabled(args) -> bool:
    mode = getattr(args, "compile", "auto")
    return mode == "on" or (mode == "auto" and torch.device(args.device).type == "cuda")


def _adamw(params, device: torch.device, **kw) -> torch.optim.AdamW:
    """AdamW; the fused kernel on CUDA (one launch for every parameter)."""
    return torch.optim.AdamW(params, **kw, **({"fused": True} if device.type == "cuda" else {}))


def _loop(stage: str, args, preset: Preset, steps: int, net: torch.nn.Module, opt, step_fn, fields: list[str], *,
          batch_fn, after_step=None) -> tuple[float, int | None]:
    """The shared training loop: cosine schedule, logging, checkpoints, resume, time-boxed stops.

    ``batch_fn(step)`` builds a step's data on the CPU (a function of the step alone, so it can be built
    ahead in worker processes, see :func:`_workers`); ``step_fn(step, batch) -> (loss, parts)`` gets it on
    the network's device. ``parts`` values may be tensors: they are read only on logged steps, so a GPU is
    not stopped every step. ``after_step(step)`` runs after the optimiser (e.g. an EMA update).
    Returns (training seconds, step it stopped at or None when finished).
    """
    out = Path(args.out)
    start, elapsed = 0, 0.0
    if args.resume and (out / "checkpoint.json").exists():
        recorded = json.loads((out / "checkpoint.json").read_text()).get("hue_spread", 0.0)
        if recorded != _spread(args):  # a run goes on in the world it began in
            raise SystemExit(f"{out} was trained with --hue-spread {recorded:g}; resume it with the same, not "
                             f"{_spread(args):g}")
        meta = _load_checkpoint(out, net, opt)
        start, elapsed = meta["step"], meta.get("seconds", 0.0)
        _truncate_log(out / "loss.csv", start)  # rows logged after the checkpoint are trained again
        print(f"{stage}: resuming from step {start}")
    warmup = min(preset.warmup, steps // 10)
    device = next(net.parameters()).device
    end = steps if args.stop_after is None or args.stop_after <= start else min(steps, args.stop_after)
    batches = _prefetch(batch_fn, range(start, end), _workers(args), pin=device.type == "cuda")

    def schedule(s):
        if s < warmup:
            return preset.lr * (s + 1) / warmup
        return preset.lr * 0.5 * (1 + math.cos(math.pi * min(s - warmup, steps) / max(steps - warmup, 1)))

    log_mode = "a" if start else "w"
    began = time.perf_counter()
    with open(out / "loss.csv", log_mode, newline="") as log:
        writer = csv.DictWriter(log, fieldnames=["step", "loss", "lr", *fields], extrasaction="ignore")
        if log_mode == "w":
            writer.writeheader()
        bar = tqdm(range(start, steps), desc=stage, initial=start, total=steps)
        for step in bar:
            for group in opt.param_groups:
                group["lr"] = schedule(step)
            loss, parts = step_fn(step, _to(next(batches), device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if preset.clip is not None:
                torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], preset.clip)
            opt.step()
            if after_step is not None:
                after_step(step)
            logging = step % preset.log_every == 0 or step == steps - 1
            stopping = args.stop_after is not None and step + 1 == args.stop_after and step + 1 < steps
            saving = ((step + 1) % preset.checkpoint_every == 0 and step + 1 < steps) or stopping
            if logging or saving:  # the loss is read (a GPU waits) only here; nothing non-finite is saved
                value = loss.item()
                if not math.isfinite(value):
                    raise FloatingPointError(f"{stage}: loss became {value} at step {step}; lower --lr or "
                                             "resume from the last checkpoint")
            if logging:
                writer.writerow({"step": step, "loss": value, "lr": schedule(step),
                                 **{k: float(v) for k, v in parts.items()}})
                log.flush()
                bar.set_postfix(loss=f"{value:.4f}")
            if saving:
                _save_checkpoint(out, step + 1, net, opt, {"seconds": elapsed + time.perf_counter() - began,
                                                           "hue_spread": _spread(args)})
            if stopping:
                bar.close()
                print(f"{stage}: stopped after step {step + 1} as asked; continue with --resume")
                return elapsed + time.perf_counter() - began, step + 1
    return elapsed + time.perf_counter() - began, None


def _finish(out: Path, stage: str, metrics: dict) -> dict:
    print(_plot(out / "loss.csv", out / "loss.png", f"shapes {stage}"))
    _write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    print(json.dumps({k: v for k, v in metrics.items() if k != "provenance"}, indent=1))
    for leftover in ("checkpoint.safetensors", "checkpoint.json"):
        (out / leftover).unlink(missing_ok=True)
    return metrics


def _pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def object_weights(x: torch.Tensor, labels: list[dict], weight: float, *, grow: int = 2) -> torch.Tensor:
    """Per-pixel loss weights ``(B, 1, H, W)``: 1 on the background, ``1 + weight`` on the object and a
    ``grow``-pixel rim around it, normalised to mean 1 per image (so the loss keeps its scale).

    An object covers 3-10% of a scene, so a plain mean lets the decoder blur its outline (a star comes
    back as a blob, which the probe reads as a square) while PSNR stays high. ``x`` is ``(B, 3, H, W)``
    in [-1, 1]; the object is every pixel that differs from the scene's background colour.
    """
    if weight == 0:
        return torch.ones_like(x[:, :1])
    background = torch.tensor([shapes.BACKGROUNDS[label["background"]] for label in labels], dtype=x.dtype)
    background = (background / 127.5 - 1).to(x.device)[:, :, None, None]
    on_object = ((x - background).abs().amax(1, keepdim=True) > 0.02).to(x.dtype)
    on_object = torch.nn.functional.max_pool2d(on_object, 2 * grow + 1, stride=1, padding=grow)
    w = 1 + weight * on_object
    return w / w.mean(dim=(1, 2, 3), keepdim=True)


def _reconstruction_loss(rec: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Weighted L1 + L2 (the weights of :func:`object_weights`); logs the plain L1 and L2."""
    d = rec - x
    loss = (w * (d.abs() + d**2)).mean()
    return loss, {"l1": d.abs().mean().detach(), "l2": (d**2).mean().detach()}


def vae_psnr(vae, split: str, n: int, *, device="cpu", batch: int = 250, hue_spread: float = 0.0) -> dict:
    """Reconstruction PSNR (dB, images in [0, 1], posterior mean) on ``n`` scenes of ``split``."""
    psnr = []
    with torch.inference_mode():
        for begin in range(0, n, batch):
            images, _, _ = shapes.make_dataset(min(batch, n - begin), split, start=begin, hue_spread=hue_spread)
            x = _pixels(images).to(device)
            rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
            mse = (((rec - x) / 2) ** 2).flatten(1).mean(1)
            psnr.append((10 * torch.log10(1 / mse.clamp(min=1e-10))).cpu())
    psnr = torch.cat(psnr)
    return {"split": split, "n": n, "psnr_mean_db": round(float(psnr.mean()), 2),
            "psnr_median_db": round(float(psnr.median()), 2), "psnr_p05_db": round(float(psnr.quantile(0.05)), 2)}


def _image_batch(step: int, *, batch: int, start: int, weight: float,
                 hue_spread: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Train scenes ``start + step * batch ...`` as pixels in [-1, 1] and their :func:`object_weights`."""
    images, labels, _ = shapes.make_dataset(batch, "train", start=start + step * batch, hue_spread=hue_spread)
    x = _pixels(images)
    return x, object_weights(x, labels, weight)


def train_vae(args) -> dict:
    """Train the AutoencoderKL; centre its latents, set ``scaling_factor``; save it under ``args.out``."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    preset, steps, out = _stage("vae", args, "diffusion_pytorch_model.safetensors")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    vae = shapes_model.new_vae().to(device)
    opt = _adamw(vae.parameters(), device, lr=preset.lr, weight_decay=0.0)
    kl_weight, sigma_weight = 1e-6, 0.1

    def step_fn(step, batch):
        x, w = batch
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=preset.amp == "bf16"):
            moments = vae.encode(x).latent_dist.parameters
        posterior = DiagonalGaussianDistribution(moments.float())  # sampled and scored in float32
        gen = torch.Generator(device).manual_seed(args.seed * 1_000_003 + step)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=preset.amp == "bf16"):
            rec = vae.decode(posterior.sample(generator=gen)).sample
        recon, parts = _reconstruction_loss(rec.float(), x, w)
        kl = posterior.kl().mean()
        # Shrink the posterior's noise quickly: with it at the KL prior's scale the decoder cannot tell
        # colours apart for thousands of steps. It stays a (narrow) Gaussian, so sampling it (img2img,
        # diffusers) still works.
        sigma = posterior.std.mean()
        loss = recon + kl_weight * kl + sigma_weight * sigma
        return loss, {**parts, "kl": kl.detach(), "sigma": sigma.detach()}

    vae.train()
    with _compiled([vae.encoder, vae.decoder], _compile_enabled(args)):
        seconds, stopped = _loop("vae", args, preset, steps, vae, opt, step_fn, ["l1", "l2", "kl", "sigma"],
                                 batch_fn=functools.partial(_image_batch, batch=preset.batch, start=0,
                                                            weight=preset.object_weight, hue_spread=_spread(args)))
    if stopped:
        return {"stopped_at": stopped}
    vae.eval()
    with torch.inference_mode():  # latent statistics on training scenes -> centred, unit-variance latents
        images, _, _ = shapes.make_dataset(2000, "train", start=10_000_000, hue_spread=_spread(args))
        z = torch.cat([vae.encode(_pixels(images[i:i + 250]).to(device)).latent_dist.mean for i in range(0, 2000, 250)])
    mean = z.mean(dim=(0, 2, 3))
    shapes_model.center_latents(vae, mean)
    std = float((z - mean[None, :, None, None]).std())
    vae.register_to_config(scaling_factor=round(1 / std, 5))
    vae = vae.cpu()
    vae.save_pretrained(out, safe_serialization=True)
    metrics = {
        "test": vae_psnr(vae, "test", args.eval_n // 2, hue_spread=_spread(args)),
        "heldout": vae_psnr(vae, "heldout", args.eval_n // 4, hue_spread=_spread(args)),
        "latent_mean_removed": [round(float(m), 4) for m in mean], "latent_std": round(std, 4),
        "provenance": _provenance(args, preset, seconds, device),
    }
    return _finish(out, "vae", metrics)


def _caption_batch(step: int, batch: int, split: str = "train", offset: int = 0) -> list[str]:
    labels = [shapes.sample_scene(offset + step * batch + i, split) for i in range(batch)]
    return [shapes.caption(scene, offset + step * batch + i) for i, scene in enumerate(labels)]


def _drop_captions(texts: list[str], scenes: list, drop: list[bool]) -> list[str]:
    """``texts`` with those marked in ``drop`` replaced by the empty caption, except an empty scene's:
    as with the data's own empty captions (:func:`latentlib.shapes.caption`), the empty caption stands for
    scenes with an object."""
    return ["" if d and scene.present else text for d, text, scene in zip(drop, texts, scenes, strict=True)]


def _tokens(tokenizer, texts: list[str], device) -> torch.Tensor:
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids.to(device)


def train_text(args) -> dict:
    """Train the CLIPTextModel to read every factor a caption names; save it and its tokenizer."""
    preset, steps, out = _stage("text", args, "text_encoder")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    tokenizer = shapes_model.build_tokenizer()
    net = torch.nn.ModuleDict({"text_encoder": shapes_model.new_text_encoder(tokenizer),
                               "heads": shapes_model.TextFactorHeads(64)}).to(device)
    opt = _adamw(net.parameters(), device, lr=preset.lr, weight_decay=1e-4)
    names = list(shapes_model.FACTOR_CLASSES)

    def text_batch(step, batch=preset.batch, split="train"):
        texts = _caption_batch(step, batch, split)
        return _tokens(tokenizer, texts, "cpu"), shapes_model.caption_targets(texts)

    def losses(batch):
        tokens, target = batch
        logits = net["heads"](net["text_encoder"](tokens.to(device)).pooler_output)
        parts = {}
        for name in names:
            t = target[name].to(device)
            if (t >= 0).any():
                parts[name] = torch.nn.functional.cross_entropy(logits[name], t, ignore_index=-100)
        return logits, target, parts

    def step_fn(step, batch):
        _, _, parts = losses(batch)
        return sum(parts.values()), {k: v.detach() for k, v in parts.items()}

    net.train()
    seconds, stopped = _loop("text", args, preset, steps, net, opt, step_fn, names, batch_fn=text_batch)
    if stopped:
        return {"stopped_at": stopped}
    net.eval()
    accuracy = {}
    with torch.inference_mode():
        for split in ("test", "heldout"):
            logits, target, _ = losses(text_batch(0, max(args.eval_n // 2, 8), split))
            accuracy[split] = {name: round(float((logits[name].argmax(1).cpu() == target[name])[target[name] >= 0]
                                                 .float().mean()), 4) for name in names if (target[name] >= 0).any()}
    net["text_encoder"].cpu().save_pretrained(out / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(out / "tokenizer")
    metrics = {"caption_factor_accuracy": accuracy, "provenance": _provenance(args, preset, seconds, device)}
    return _finish(out, "text", metrics)


def _scene_pixels(begin: int, *, n: int, batch: int, hue_spread: float = 0.0) -> torch.Tensor:
    images, _, _ = shapes.make_dataset(min(batch, n - begin), "train", start=begin, hue_spread=hue_spread)
    return _pixels(images)


def _encode_scenes(vae, n: int, device, batch: int = 500, workers: int = 0, hue_spread: float = 0.0) -> torch.Tensor:
    """Scaled latents of train scenes ``0 .. n - 1`` (posterior mean); scenes rendered in ``workers``."""
    chunks = []
    starts = range(0, n, batch)
    pixels = _prefetch(functools.partial(_scene_pixels, n=n, batch=batch, hue_spread=hue_spread), starts, workers,
                       pin=torch.device(device).type == "cuda")
    with torch.inference_mode():
        for x in tqdm(pixels, desc="encoding scenes", total=len(starts)):
            chunks.append(vae.encode(x.to(device)).latent_dist.mean.cpu())
    return torch.cat(chunks) * vae.config.scaling_factor


def train_unet(args) -> dict:
    """Train the UNet on the trained VAE's latents and text encoder; write its EMA weights to OUT/unet."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer

    preset, steps, out = _stage("unet", args, "unet")
    device = torch.device(args.device)
    for name, folder in (("--vae", args.vae), ("--text", args.text)):
        if folder is None or not Path(folder).is_dir():
            raise SystemExit(f"the unet stage needs {name} (a finished {name[2:]} stage folder); got {folder!r}")
    vae = AutoencoderKL.from_pretrained(args.vae).to(device).eval()
    text_encoder = CLIPTextModel.from_pretrained(Path(args.text) / "text_encoder").to(device).eval()
    tokenizer = CLIPTokenizer.from_pretrained(Path(args.text) / "tokenizer")
    n_scenes = args.scenes or UNET_SCENES[args.preset]
    cache = out / "latents.safetensors"
    # the cache names its world's hue_spread (a cache from another spread is encoded again)
    spread = torch.tensor([_spread(args)], dtype=torch.float64)
    cached = load_file(cache) if cache.exists() else {}
    if "latents" in cached and cached["latents"].shape[0] == n_scenes \
            and torch.equal(cached.get("hue_spread", torch.zeros(1, dtype=torch.float64)), spread):
        latents = cached["latents"]
    else:
        latents = _encode_scenes(vae, n_scenes, device, workers=_workers(args), hue_spread=_spread(args))
        save_file({"latents": latents.contiguous(), "hue_spread": spread}, cache)
    del cached
    latents = latents.to(device)
    torch.manual_seed(args.seed)
    text_time = True
    init = None
    if args.init is not None:  # continue training a finished UNet (a new schedule, a new run folder)
        from diffusers import UNet2DConditionModel

        folder = Path(args.init)
        init = UNet2DConditionModel.from_pretrained(folder / "unet" if (folder / "unet").is_dir() else folder)
        text_time = init.config.addition_embed_type == "text"  # the architecture it was trained with
    unet = shapes_model.new_unet(text_encoder.config.hidden_size, text_time=text_time).to(device)
    ema = shapes_model.new_unet(text_encoder.config.hidden_size, text_time=text_time).to(device).requires_grad_(False)
    if init is not None:
        unet.load_state_dict(init.state_dict())
    ema.load_state_dict(unet.state_dict())
    net = torch.nn.ModuleDict({"unet": unet, "ema": ema})
    opt = _adamw(unet.parameters(), device, lr=preset.lr, weight_decay=1e-2)
    alphas = shapes_model.new_scheduler().alphas_cumprod.to(device)
    snr = alphas / (1 - alphas)
    weight = snr.clamp(max=5.0) / snr  # min-SNR-5 weighting (Hang et al. 2023), epsilon prediction
    ema_decay = 0.999 if steps >= 2000 else 0.9

    latent_shape = tuple(latents.shape[1:])

    def unet_batch(step):  # everything drawn on the CPU, in this order: scenes, dropout, timesteps, noise
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        index = torch.randint(0, n_scenes, (preset.batch,), generator=gen)
        # captions only: they do not depend on the hue, so the spread's scenes (the latents) need not be drawn
        scenes = [shapes.sample_scene(int(i), "train") for i in index]
        texts = [shapes.caption(scene, 10_000_000 + step * preset.batch + j) for j, scene in enumerate(scenes)]
        if preset.caption_dropout:  # drawn only when asked, so runs without it keep their random stream
            drop = torch.rand(preset.batch, generator=gen) < preset.caption_dropout
            texts = _drop_captions(texts, scenes, drop.tolist())
        t = torch.randint(0, 1000, (preset.batch,), generator=gen)
        noise = torch.randn((preset.batch, *latent_shape), generator=gen)
        return index, _tokens(tokenizer, texts, "cpu"), t, noise

    def step_fn(step, batch):
        index, tokens, t, noise = batch
        with torch.no_grad():
            context = text_encoder(tokens).last_hidden_state
        z0 = latents[index]
        a = alphas[t].sqrt()[:, None, None, None]
        s = (1 - alphas[t]).sqrt()[:, None, None, None]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=preset.amp == "bf16"):
            pred = unet(a * z0 + s * noise, t, context).sample
        per_item = ((pred.float() - noise) ** 2).mean(dim=(1, 2, 3))
        loss = (weight[t] * per_item).mean()
        return loss, {"mse": per_item.mean().detach()}

    ema_params, unet_params = list(ema.parameters()), list(unet.parameters())

    def ema_update(step):
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, unet_params, 1 - ema_decay)

    unet.train()
    with _compiled([unet], _compile_enabled(args)):
        seconds, stopped = _loop("unet", args, preset, steps, net, opt, step_fn, ["mse"], after_step=ema_update,
                                 batch_fn=unet_batch)
    if stopped:
        return {"stopped_at": stopped}
    ema.cpu().eval().save_pretrained(out / "unet", safe_serialization=True)
    metrics = {"scenes": n_scenes, "ema_decay": ema_decay, "vae_encoder": encoder_fingerprint(vae), "init": args.init,
               "caption_dropout": preset.caption_dropout, "amp": preset.amp,
               "provenance": _provenance(args, preset, seconds, device)}
    return _finish(out, "unet", metrics)


def encoder_fingerprint(vae) -> str:
    """SHA-256 of the VAE's encoder side (encoder + quant_conv): the latents a UNet was trained on."""
    import hashlib

    digest = hashlib.sha256()
    for key, value in sorted(vae.state_dict().items()):
        if key.startswith(("encoder.", "quant_conv.")):
            digest.update(key.encode())
            digest.update(value.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def train_decoder(args) -> dict:
    """Fine-tune the VAE's decoder on posterior-mean latents; the encoder (so every latent) stays as it is.

    Stable Diffusion's released VAEs were improved the same way (decoder-only fine-tunes). Because the
    latents do not change, this stage and the unet stage can run in either order.
    """
    from diffusers import AutoencoderKL

    preset, steps, out = _stage("decoder", args, "diffusion_pytorch_model.safetensors")
    if args.vae is None or not Path(args.vae).is_dir():
        raise SystemExit(f"the decoder stage needs --vae (a finished vae stage folder); got {args.vae!r}")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    vae = AutoencoderKL.from_pretrained(args.vae).to(device)
    before = encoder_fingerprint(vae)
    vae.encoder.requires_grad_(False).eval()
    vae.quant_conv.requires_grad_(False)
    trainable = [p for p in vae.parameters() if p.requires_grad]
    opt = _adamw(trainable, device, lr=preset.lr, weight_decay=0.0)

    def step_fn(step, batch):
        x, w = batch
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean  # float32: the latents the unet stage trains on
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=preset.amp == "bf16"):
            rec = vae.decode(z).sample
        return _reconstruction_loss(rec.float(), x, w)

    vae.decoder.train()
    with _compiled([vae.decoder], _compile_enabled(args)):
        seconds, stopped = _loop("decoder", args, preset, steps, vae, opt, step_fn, ["l1", "l2"],
                                 batch_fn=functools.partial(_image_batch, batch=preset.batch, start=5_000_000,
                                                            weight=preset.object_weight, hue_spread=_spread(args)))
    if stopped:
        return {"stopped_at": stopped}
    vae = vae.cpu().eval()
    if encoder_fingerprint(vae) != before:
        raise RuntimeError("the decoder stage changed the encoder; this is a bug")
    vae.save_pretrained(out, safe_serialization=True)
    metrics = {
        "test": vae_psnr(vae, "test", args.eval_n // 2, hue_spread=_spread(args)),
        "heldout": vae_psnr(vae, "heldout", args.eval_n // 4, hue_spread=_spread(args)),
        "vae_encoder": before,
        "provenance": _provenance(args, preset, seconds, device),
    }
    return _finish(out, "decoder", metrics)


def assemble_model(args) -> dict:
    """Write the diffusers folder ``--out`` from the vae (or decoder), text and unet stage folders."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    out = Path(args.out)
    for name, folder in (("--vae", args.vae), ("--text", args.text), ("--unet", args.unet)):
        if folder is None or not Path(folder).is_dir():
            raise SystemExit(f"assemble needs {name} (a finished stage folder); got {folder!r}")
    if (out / "model_index.json").exists() and not args.overwrite:
        raise SystemExit(f"{out} already holds a model; pass --overwrite to replace it.")
    vae = AutoencoderKL.from_pretrained(args.vae)
    unet_metrics = json.loads((Path(args.unet) / "metrics.json").read_text())
    if unet_metrics.get("vae_encoder") != encoder_fingerprint(vae):
        raise SystemExit(f"{args.vae} does not encode the latents the UNet in {args.unet} was trained on "
                         "(different VAE encoder); pass the vae or decoder stage it was trained with")
    # the world the UNet learned (a unet stage from before hue_spread existed learned the discrete one)
    world = {"hue_spread": float(unet_metrics.get("provenance", {}).get("hue_spread", 0.0))}
    vae_metrics = Path(args.vae) / "metrics.json"
    if vae_metrics.is_file():  # a VAE from another world still encodes the UNet's latents: allowed, but said
        vae_spread = float(json.loads(vae_metrics.read_text()).get("provenance", {}).get("hue_spread", 0.0))
        if vae_spread != world["hue_spread"]:
            print(f"note: the VAE in {args.vae} was trained on hue_spread {vae_spread:g}, the UNet in {args.unet} on "
                  f"{world['hue_spread']:g}; the model records the UNet's world ({world['hue_spread']:g})",
                  file=sys.stderr)
    shapes_model.assemble(out, vae=vae, unet=UNet2DConditionModel.from_pretrained(Path(args.unet) / "unet"),
                          text_encoder=CLIPTextModel.from_pretrained(Path(args.text) / "text_encoder"),
                          tokenizer=CLIPTokenizer.from_pretrained(Path(args.text) / "tokenizer"), world=world)
    print(f"wrote {out}; evaluate it with: python -m latentlib.evaluate_shapes --model {out} --runs {out.parent} --card")
    return {"model": str(out)}


def train_probe(args) -> dict:
    """Train a :class:`~latentlib.probes.ShapesProbe`; write it and its metrics under ``args.out``."""
    preset, steps, out = _stage("probe", args, "probe.safetensors")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    if args.init is not None:  # continue training a finished probe (e.g. on a world with continuous hues)
        net = probes.load_probe(args.init).net.to(device).train().requires_grad_(True)
    else:
        net = probes.ShapesProbe().to(device)
    opt = _adamw(net.parameters(), device, lr=preset.lr, weight_decay=1e-4)

    def probe_batch(step):
        pixels, labels = _probe_batch(step, preset.batch, args.seed, hue_spread=_spread(args))
        return pixels, probes.probe_targets(labels)

    def step_fn(step, batch):
        pixels, targets = batch
        return probes.probe_loss(net(pixels), targets)

    seconds, stopped = _loop("probe", args, preset, steps, net, opt, step_fn,
                             ["present", "background", "shape", "color", "size", "x", "y", "rotation"],
                             batch_fn=probe_batch)
    if stopped:
        return {"stopped_at": stopped}
    net = net.cpu().eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, out / "probe.safetensors.tmp")
    (out / "probe.safetensors.tmp").replace(out / "probe.safetensors")
    _write_text(out / "config.json", json.dumps(net.config, indent=1))
    metrics = {
        "test": probes.evaluate_probe(probes.Probe(net), n=args.eval_n, split="test", hue_spread=_spread(args)),
        "heldout": probes.evaluate_probe(probes.Probe(net), n=max(args.eval_n // 4, 1), split="heldout",
                                         hue_spread=_spread(args)),
        "init": args.init,
        "provenance": _provenance(args, preset, seconds, device),
    }
    return _finish(out, "probe", metrics)


def train_all(args) -> dict:
    """vae, text, unet, the model folder OUT/model, then probe; each stage in ``OUT/<stage>``.

    With ``--resume`` a finished stage (its ``metrics.json`` written) is kept and the first unfinished one
    continues from its checkpoint.

    With ``--decoder`` the decoder stage runs after vae and the model takes its VAE from it, as version 9
    (whose VAE the shipped model keeps) was made: 44.5 dB against the vae stage's 43.3, the same latents.
    """
    root = Path(args.out)
    order = ("vae", "decoder", "text", "unet", "assemble", "probe") if args.decoder else (
        "vae", "text", "unet", "assemble", "probe")
    if args.no_probe:
        order = order[:-1]
    results = {}
    for stage in order:
        sub = argparse.Namespace(**vars(args))
        sub.out = str(root / ("model" if stage == "assemble" else stage))
        sub.vae = str(root / ("decoder" if stage == "assemble" and args.decoder else "vae"))
        sub.text, sub.unet = str(root / "text"), str(root / "unet")
        sub.steps = {"vae": args.vae_steps, "unet": args.unet_steps}.get(stage)
        sub.init = args.init if stage == "unet" else None  # all --init: a UNet to continue
        done = Path(sub.out) / ("model_index.json" if stage == "assemble" else "metrics.json")
        if args.resume and done.exists():  # `all --resume`: finished stages stay as they are
            if stage != "assemble":  # ... if they learned the same world
                recorded = json.loads(done.read_text()).get("provenance", {}).get("hue_spread", 0.0)
                if recorded != _spread(args):
                    raise SystemExit(f"{done.parent} was trained with --hue-spread {recorded:g}; `all --resume` "
                                     f"continues with the same, not {_spread(args):g}")
            print(f"{stage}: finished earlier ({done}); kept")
            results[stage] = {"kept": str(done)}
            continue
        began = time.perf_counter()
        results[stage] = STAGES[stage](sub)
        print(f"{stage}: {time.perf_counter() - began:.0f} s wall (set-up, training, evaluation)")
        if "stopped_at" in results[stage]:
            return results
    return results


STAGES = {"vae": train_vae, "decoder": train_decoder, "text": train_text, "unet": train_unet,
          "assemble": assemble_model, "probe": train_probe, "all": train_all}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m latentlib.train_shapes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=list(STAGES), help="what to train")
    parser.add_argument("--out", required=True, help="run folder (created); the trained files land here")
    parser.add_argument("--preset", default="cpu", help="cpu (2 cores), gpu, or smoke (seconds, for tests)")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's step count")
    parser.add_argument("--lr", type=float, default=None,
                        help="override the preset's peak learning rate (e.g. a gentler continuation with --init)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-n", type=int, default=2000, help="test scenes for the final evaluation")
    parser.add_argument("--vae", default=None,
                        help="decoder, unet: the finished vae stage folder; assemble: the vae or decoder stage")
    parser.add_argument("--text", default=None, help="unet, assemble: the finished text stage folder")
    parser.add_argument("--unet", default=None, help="assemble: the finished unet stage folder")
    parser.add_argument("--init", default=None,
                        help="unet stage (and all): start from this UNet (a unet stage folder or a model folder); "
                             "probe stage: from this probe folder")
    parser.add_argument("--hue-spread", type=float, default=0.0,
                        help="the world's hue_spread, 0..1: each object's hue drawn within that share of its colour "
                             "name's part of the hue circle (latentlib.shapes.sample_scene; 0, the default: each "
                             "name's exact RGB). The model folder records it (world.json)")
    parser.add_argument("--scenes", type=int, default=None, help="unet stage: scenes to pre-encode (preset default)")
    parser.add_argument("--caption-dropout", type=float, default=None,
                        help="unet stage (and all): share of captions of scenes with an object replaced by the empty "
                             f"caption, on top of the data's own {shapes._EMPTY_CAPTION * 100:.0f}%% (more training of "
                             "the unconditional model; default: the preset's)")
    parser.add_argument("--amp", choices=("off", "bf16"), default=None,
                        help="vae, decoder and unet stages (and all): run the network's forward pass under bfloat16 "
                             "autocast (weights, optimiser and loss stay float32; default: the preset's, bf16 for "
                             "cpu, off for gpu)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes that build the training data ahead of each step (default: 0 on the CPU, "
                             "up to 12 beside a GPU); the data, so the run, is the same for any number")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="run the vae, decoder and unet stages' networks through torch.compile (auto: on "
                             "CUDA only; the weights saved are the same modules, uncompiled)")
    parser.add_argument("--vae-steps", type=int, default=None, help="all: the vae stage's step count (default: the preset's)")
    parser.add_argument("--unet-steps", type=int, default=None,
                        help="all: the unet stage's step count (default: the preset's)")
    parser.add_argument("--no-probe", action="store_true", help="all: leave the probe stage out")
    parser.add_argument("--decoder", action="store_true",
                        help="all: also run the decoder stage and build the model's VAE from it")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop after this many steps, keeping a checkpoint (a time-boxed run); --resume goes on")
    args = parser.parse_args(argv)
    args.argv = argv
    args.git_at_start = _git_state()
    if args.preset not in PRESETS["probe"]:
        parser.error(f"--preset {args.preset!r} is not one of {', '.join(PRESETS['probe'])}")
    for flag in ("vae_steps", "unet_steps", "no_probe"):
        if getattr(args, flag) not in (None, False) and args.stage != "all":
            parser.error(f"--{flag.replace('_', '-')} applies to all; give a single stage --steps")
    for flag in ("vae_steps", "unet_steps"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be 1 or more; got {getattr(args, flag)}")
    if args.decoder and args.stage != "all":
        parser.error("--decoder applies to `all`; run the decoder stage itself with `decoder --vae ...`")
    for flag in ("steps", "lr"):
        if getattr(args, flag) is not None and args.stage == "all":
            parser.error(f"--{flag} applies to one stage; use it with vae, text, unet or probe")
    if args.caption_dropout is not None:
        if not (0.0 <= args.caption_dropout < 1.0):
            parser.error(f"--caption-dropout must be in [0, 1); got {args.caption_dropout}")
        if args.stage not in ("unet", "all"):
            parser.error(f"--caption-dropout applies to the unet stage (or all), not {args.stage!r}")
    if args.amp is not None and args.stage not in ("vae", "decoder", "unet", "all"):
        parser.error(f"--amp applies to the vae, decoder and unet stages (or all), not {args.stage!r}")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        parser.error(f"--lr must be a positive number; got {args.lr}")
    if not 0 <= args.hue_spread <= 1:
        parser.error(f"--hue-spread must be in [0, 1]; got {args.hue_spread}")
    if args.stage == "probe" and args.init is not None and not all(
            (Path(args.init) / name).is_file() for name in ("probe.safetensors", "config.json")):
        parser.error(f"--init {args.init!r}: the probe stage continues a probe folder (probe.safetensors + "
                     "config.json), e.g. latentlib/weights/shapes-probe")
    if args.init is not None and args.stage not in ("unet", "probe", "all"):
        parser.error(f"--init applies to the unet and probe stages (all: the unet stage), not {args.stage!r}")
    if args.workers is not None and args.workers < 0:
        parser.error(f"--workers must be 0 or more; got {args.workers}")
    if torch.device(args.device).type == "cuda":
        if not torch.cuda.is_available():
            parser.error(f"--device {args.device}: CUDA is not available here (use --device cpu --preset cpu)")
        torch.set_float32_matmul_precision("high")  # TF32 matrix products, as for cuDNN's convolutions
    np.seterr(all="ignore")
    return STAGES[args.stage](args)


if __name__ == "__main__":
    main()
