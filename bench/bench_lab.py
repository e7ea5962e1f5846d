"""Slider latency of the lab's Explorer: from a slider value change to new image bytes on the widget.

Measured on the default model, CPU, at preview settings (8 steps, guidance 5, the model's sampler), over
50 slider moves, in two ways:

- **one move at a time**: set the slider, wait for its preview frame's bytes on ``app.image``, next move
  (the issue's figure: median <= 150 ms, p95 <= 300 ms);
- **a drag**: 50 moves 30 ms apart, as a mouse drag sends them; reports how many frames were shown and
  the latency of each (stale positions are dropped, so a frame is always of a recent position).

For comparison, the same one-move-at-a-time loop calling ``StableDiffusionPipeline.__call__`` per frame
(prompt embeddings moved along the same direction by hand, PNG bytes set on an ``ipywidgets.Image``),
in the same process, twice: at the preview's settings (the same UNet work: what the lab's plumbing
costs) and at the Explorer's full-quality settings (what a slider wired straight to the pipeline runs
on every move). Last, what a large frame costs on its way to the view (tensor to PIL, PNG, JPEG) at
``--encode-size``. Prints a table and writes JSON (default bench/results/lab.json).

    python bench/bench_lab.py
    python bench/bench_lab.py --moves 10        # smoke run
    python bench/bench_lab.py --device cuda     # on a GPU (not yet run: no device was lent)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import environment, timed, write_report

import latentlib as ll
from lab import Explorer
from lab.app import frame_bytes, png_bytes

PROMPT = "a red circle"


def summary(seconds: list[float]) -> dict:
    ms = sorted(1e3 * s for s in seconds)
    return {"n": len(ms), "median_ms": statistics.median(ms), "p95_ms": float(np.percentile(ms, 95)),
            "min_ms": ms[0], "max_ms": ms[-1]}


def strengths(moves: int) -> list[float]:
    """A back-and-forth drag over -1..1 in the slider's 0.1 steps (no two consecutive values equal)."""
    wave = [k / 10 for k in range(1, 11)] + [k / 10 for k in range(9, -11, -1)] + [k / 10 for k in range(-9, 1)]
    return [round(wave[k % len(wave)], 1) for k in range(moves)]


def explorer_one_at_a_time(model, direction, moves: int, preview_steps: int) -> dict:
    app = Explorer(model, [direction], prompt=PROMPT, steps=20, preview_steps=preview_steps, settle=3600.0)
    # settle=3600: no full frame follows a move here, so each move's preview is timed alone
    app.renderer.stop()  # skip the first full frame; the first move makes the first preview
    app.wait()
    slider = app.sliders[direction.name]
    arrived = threading.Event()
    app.image.observe(lambda change: arrived.set(), names="value")
    out = []
    for s in [0.5, -0.5] + strengths(moves):  # two warm-up moves (the drag starts at 0.1)
        arrived.clear()
        start = time.perf_counter()
        slider.value = s
        if not arrived.wait(30):
            raise RuntimeError("no frame within 30 s")
        out.append(time.perf_counter() - start)
        assert app.frame.quality == "preview" and app.frame.params["strengths"][direction.name] == s
    app.close()
    return summary(out[2:])


def explorer_drag(model, direction, moves: int, preview_steps: int, interval: float) -> dict:
    app = Explorer(model, [direction], prompt=PROMPT, steps=20, preview_steps=preview_steps, settle=0.3)
    app.wait()
    slider = app.sliders[direction.name]
    shown = []  # (when the bytes were set, the frame) for every frame shown
    app.image.observe(lambda change: shown.append((time.perf_counter(), app.frame)), names="value")
    values = strengths(moves)
    start = time.perf_counter()
    for k, s in enumerate(values):
        time.sleep(max(0.0, start + k * interval - time.perf_counter()))
        slider.value = s  # the observer makes the request (stamped frame.requested_at) before this returns
    last_move = time.perf_counter()
    app.wait()
    previews = [(t, f) for t, f in shown if f.quality == "preview"]
    latencies = [t - f.requested_at for t, f in previews]  # each frame: from its own slider move to its bytes
    final = [(t, f) for t, f in shown if f.quality == "full"]
    stats = dict(app.renderer.stats)
    app.close()
    return {"moves": moves, "interval_ms": 1e3 * interval, "drag_ms": 1e3 * (last_move - start),
            "preview_frames": len(previews), "preview_latency": summary(latencies) if latencies else None,
            "full_frame_after_last_move_ms": 1e3 * (final[-1][0] - last_move) if final else None,
            "full_frame_is_last_position": bool(final) and final[-1][1].params["strengths"][direction.name] == values[-1],
            "stats": stats}


def pipeline_one_at_a_time(model, direction, moves: int, steps: int) -> dict:
    import ipywidgets as widgets
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=model.vae, unet=model.unet, text_encoder=model.text_encoder,
                                   tokenizer=model.tokenizer, scheduler=model.scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    image = widgets.Image(format="png")
    delta = (direction.scale * direction.vector).to(model.dtype)
    out = []
    for s in [0.5, -0.5] + strengths(moves):
        start = time.perf_counter()
        embeds = pipe.encode_prompt(PROMPT, model.device, 1, True, "")  # (cond, uncond), as __call__ does
        frame = pipe(prompt_embeds=embeds[0] + s * delta, negative_prompt_embeds=embeds[1],
                     num_inference_steps=steps, guidance_scale=5.0,
                     generator=torch.Generator().manual_seed(0)).images[0]
        image.value = png_bytes(frame, 256)
        out.append(time.perf_counter() - start)
    return summary(out[2:])


def frame_encoding(size: int, repeats: int = 20) -> dict:
    """Median milliseconds (bench_core.timed) to turn one ``size`` x ``size`` frame into what the view gets: the
    float tensor to a PIL image (``pixels_to_output``), then PNG (full frames) or JPEG (large previews,
    ``LiveApp.preview_format``), for a smooth frame and for noise (an easy and a hard case for PNG; a generated
    frame lies between)."""
    from latentlib.codec import pixels_to_output

    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    frames = {"smooth": torch.stack([xx / size, yy / size, (xx + yy) / (2 * size)])[None].float(),
              "noise": torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))}

    def ms(fn) -> float:
        return round(timed(fn, torch.device("cpu"), repeats, warmup=1)["median_ms"], 3)

    out = {"size": size, "repeats": repeats}
    for name, pixels in frames.items():
        image = pixels_to_output(pixels, "pil")[0]
        out[name] = {"to_pil_ms": ms(lambda pixels=pixels: pixels_to_output(pixels, "pil")),
                     "png_ms": ms(lambda image=image: frame_bytes(image, None, "png")),
                     "jpeg_ms": ms(lambda image=image: frame_bytes(image, None, "jpeg"))}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=50)
    parser.add_argument("--preview-steps", type=int, default=8)
    parser.add_argument("--full-steps", type=int, default=20, help="the Explorer's full-quality frame")
    parser.add_argument("--interval", type=float, default=0.03, help="seconds between moves of the drag")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda: on a GPU the same loops show whether the "
                        "widget plumbing or the GPU work bounds a slider move")
    parser.add_argument("--encode-size", type=int, default=512, help="frame size for the encoding figures (default 512)")
    parser.add_argument("--out", default="bench/results/lab.json")
    args = parser.parse_args(argv)
    if args.encode_size < 8:
        parser.error(f"--encode-size must be at least 8 pixels, got {args.encode_size}")
    torch.set_num_threads(args.threads)
    model = ll.load(device=args.device)
    direction = ll.text_direction(model, "a red circle", "a blue circle", name="red to blue")
    result = {"settings": {"model": model.name, "prompt": PROMPT, "preview_steps": args.preview_steps,
                           "guidance": 5.0, "moves": args.moves, "threads": args.threads, "device": args.device,
                           "direction": "text direction 'a red circle' -> 'a blue circle' (prompt space)"},
              **environment()}
    result["explorer"] = explorer_one_at_a_time(model, direction, args.moves, args.preview_steps)
    result["pipeline_preview_settings"] = pipeline_one_at_a_time(model, direction, args.moves, args.preview_steps)
    result["pipeline_full_settings"] = pipeline_one_at_a_time(model, direction, args.moves, args.full_steps)
    for key in ("preview", "full"):
        result[f"speedup_vs_pipeline_{key}_settings"] = (result[f"pipeline_{key}_settings"]["median_ms"]
                                                        / result["explorer"]["median_ms"])
    result["explorer_drag"] = explorer_drag(model, direction, args.moves, args.preview_steps, args.interval)
    e, d = result["explorer"], result["explorer_drag"]
    pp, pf = result["pipeline_preview_settings"], result["pipeline_full_settings"]
    where = f"CPU {args.threads} threads" if args.device == "cpu" else environment()["machine"]["gpu"]
    print(f"slider move -> image bytes, {args.moves} moves, {where}, guidance 5")
    print(f"  Explorer preview ({args.preview_steps} steps)                 median {e['median_ms']:7.1f} ms   "
          f"p95 {e['p95_ms']:7.1f} ms")
    print(f"  StableDiffusionPipeline, {args.preview_steps} steps per move      median {pp['median_ms']:7.1f} ms   "
          f"p95 {pp['p95_ms']:7.1f} ms   ({result['speedup_vs_pipeline_preview_settings']:.2f}x)")
    print(f"  StableDiffusionPipeline, {args.full_steps} steps per move     median {pf['median_ms']:7.1f} ms   "
          f"p95 {pf['p95_ms']:7.1f} ms   ({result['speedup_vs_pipeline_full_settings']:.2f}x)")
    pl, last = d["preview_latency"], d["full_frame_after_last_move_ms"]
    latency = f"latency median {pl['median_ms']:.1f} ms p95 {pl['p95_ms']:.1f} ms" if pl else "no preview frame"
    final = f"{last:.0f} ms after the last move" if last is not None else "none"
    print(f"  drag ({args.moves} moves {d['interval_ms']:.0f} ms apart): {d['preview_frames']} preview frames shown, "
          f"{latency}; full frame {final} (its position: {d['full_frame_is_last_position']})")
    result["frame_encoding"] = enc = frame_encoding(args.encode_size)
    print(f"  a {enc['size']}x{enc['size']} frame for the view (smooth / noise): tensor to PIL "
          f"{enc['smooth']['to_pil_ms']:.1f} / {enc['noise']['to_pil_ms']:.1f} ms, PNG {enc['smooth']['png_ms']:.1f} / "
          f"{enc['noise']['png_ms']:.1f} ms, JPEG {enc['smooth']['jpeg_ms']:.1f} / {enc['noise']['jpeg_ms']:.1f} ms")
    write_report(args.out, result)
    return result


if __name__ == "__main__":
    main()
