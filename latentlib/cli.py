"""``latentlib`` on the command line: figures for reports, scripted end to end.

    latentlib figure grid   --prompt "a red circle" --prompt "a blue star" --seeds 0 1 2 3 --out grid.png
    latentlib figure strip  --between prompts --start "a red circle" --end "a blue square" --out strip.pdf
    latentlib figure sweep  --direction-prompts "a small red circle" "a large red circle" --seeds 0 1 --out sweep.png
    latentlib figure map    --space xT --n 64 --prompt "a circle" --color shape --out map.html
    latentlib discover      --space h --method pca --n 2000 --align --bank runs/h.safetensors
    latentlib discover      --space h --method ridge --attribute x --n 2000 --bank runs/h.safetensors
    latentlib report-card   --bank runs/h.safetensors --direction x --seeds 32 --out runs/cards/x

Every command takes ``--model`` (default: the embedded "shapes" model), ``--device``, ``--dtype``,
generation settings (``--steps``, ``--guidance``, ``--scheduler``, ``--negative-prompt``) and
``--overwrite``; ``--help`` on each lists its options. Files carry their parameters
(``latentlib.export.read_metadata``) and can be made again (``latentlib.export.reproduce``).
"""

from __future__ import annotations

import argparse
import sys
from types import SimpleNamespace

__all__ = ["main", "prompt_direction"]


def prompt_direction(model, start: str, end: str, name: str | None = None) -> SimpleNamespace:
    """The prompt-space direction from ``start`` to ``end``: unit vector of ``embed(end) - embed(start)``
    with ``scale`` its length, so strength 1 moves a prompt's embedding by exactly that difference."""
    import torch

    delta = (model.embed(end).embeds - model.embed(start).embeds)[0].float().cpu()
    norm = float(delta.norm())
    if norm == 0:
        raise ValueError(f"`--direction-prompts` {start!r} and {end!r} embed identically; there is no direction.")
    return SimpleNamespace(name=name or f"{start} -> {end}", space="prompt", vector=(delta / norm).to(torch.float32),
                           scale=norm, provenance={"method": "prompt difference", "start": start, "end": end})


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output file; the extension picks the format")
    _model_and_generation(parser)
    parser.add_argument("--cell", type=int, default=None, help="pixels per image in the figure (default: >= 128)")
    parser.add_argument("--title", default=None, help="figure title")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")


def _model_and_generation(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="diffusers folder or hub id (default: the embedded 'shapes')")
    parser.add_argument("--device", default=None, help="cpu (default), cuda, cuda:N, mps or auto")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default), float16, bfloat16")
    parser.add_argument("--steps", type=int, default=20, help="sampler steps (default 20)")
    parser.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance scale (default 5)")
    parser.add_argument("--scheduler", default="default", help="sampler name (latentlib.SCHEDULERS) or 'default'")
    parser.add_argument("--negative-prompt", default=None, help="negative prompt (default: empty)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentlib", description="Explore latent diffusion models: figures for "
                                     "reports, direction discovery and report cards.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    figure = commands.add_parser("figure", help="make a figure that carries its parameters",
                                 description="Make a figure (PNG, JPEG, WebP, PDF, SVG; maps also HTML).")
    kinds = figure.add_subparsers(dest="kind", required=True, metavar="KIND")

    grid = kinds.add_parser("grid", help="prompts (rows) x seeds (columns)")
    grid.add_argument("--prompt", action="append", required=True, help="a row's prompt (repeat for more rows)")
    grid.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="one column per seed")
    _common(grid)

    strip = kinds.add_parser("strip", help="an interpolation between two seeds or two prompts")
    strip.add_argument("--between", choices=("seeds", "prompts"), default="seeds")
    strip.add_argument("--start", required=True, help="first seed (--between seeds) or prompt")
    strip.add_argument("--end", required=True, help="last seed or prompt")
    strip.add_argument("--n", type=int, default=8, help="frames, ends included (default 8)")
    strip.add_argument("--method", choices=("slerp", "lerp"), default="slerp")
    strip.add_argument("--prompt", default="", help="prompt for a seed strip")
    strip.add_argument("--seed", type=int, default=0, help="seed for a prompt strip")
    _common(strip)

    sweep = kinds.add_parser("sweep", help="a direction's strengths (columns) x seeds (rows)")
    sweep.add_argument("--direction-prompts", nargs=2, action="append", metavar=("FROM", "TO"), required=True,
                       help="a prompt-space direction from FROM to TO (repeat for several directions, one seed)")
    sweep.add_argument("--strengths", type=float, nargs="+", default=[-1.0, -0.5, 0.0, 0.5, 1.0])
    sweep.add_argument("--seeds", type=int, nargs="+", default=[0])
    sweep.add_argument("--prompt", default=None, help="the prompt the direction is added to (default: FROM)")
    _common(sweep)

    fmap = kinds.add_parser("map", help="a 2-D PCA map of generated samples in a space, coloured by a probe")
    fmap.add_argument("--space", choices=("xT", "z0"), default="z0",
                      help="xT: the seeds' initial noise; z0: the generated images' VAE latents (default)")
    fmap.add_argument("--n", type=int, default=64, help="samples (seeds 0 .. n-1)")
    fmap.add_argument("--prompt", default="", help="prompt for the samples (default: empty)")
    fmap.add_argument("--color", default="shape",
                      help="colour by a probe reading of the default model (shape, color, background, size, x, y) "
                           "or 'seed'")
    _common(fmap)

    from .discover import add_discover_arguments, add_report_card_arguments

    discover = commands.add_parser(
        "discover", help="find directions in a space and add them to a bank",
        description="Collect samples of a space (cached on disk chunk by chunk, so an interrupted run resumes), "
                    "find directions (PCA, or supervised from a probe's readings) and add them to a direction bank "
                    "(NAME.safetensors + NAME.json). Same arguments, same directions.")
    add_discover_arguments(discover)
    _model_and_generation(discover)
    card = commands.add_parser(
        "report-card", help="score a bank's direction with a probe: CSV, Markdown and a figure",
        description="Generate every seed at every strength of a direction, read the images with a probe, and "
                    "write summary.csv, readings.csv, per_seed.csv, report.md and the figure into --out.")
    add_report_card_arguments(card)
    _model_and_generation(card)
    return parser


def _generation(args) -> dict:
    out = {"steps": args.steps, "guidance": args.guidance, "scheduler": args.scheduler}
    if args.negative_prompt is not None:
        out["negative_prompt"] = args.negative_prompt
    return out


def _seed(parser, name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        parser.error(f"--{name} must be a seed (an integer) with --between seeds, got {value!r}")


def _map(model, args) -> dict:
    import numpy as np
    from sklearn.decomposition import PCA

    from . import export

    if args.n < 3:
        raise ValueError(f"--n must be at least 3 for a 2-D map, got {args.n}.")
    seeds = list(range(args.n))
    gen = _generation(args)
    images, latents = model.generate(args.prompt, seed=seeds, return_latents=True, progress=False, **gen)
    samples = model.noise(seed=seeds) if args.space == "xT" else latents
    flat = samples.reshape(len(seeds), -1).float().cpu().numpy()
    pca = PCA(n_components=2, random_state=0).fit(flat)
    xy = pca.transform(flat)
    labels = [f"seed {s}" for s in seeds]
    if args.color == "seed":
        color, name = seeds, "seed"
    else:
        from .probes import load_probe

        readings = load_probe()(np.stack([np.asarray(im) for im in images]))
        if args.color not in readings:
            raise ValueError(f"--color {args.color!r} is not a probe reading; use one of "
                             f"{', '.join(k for k in readings if not k.endswith('_prob'))} or 'seed'.")
        color, name = list(readings[args.color]), args.color
        labels = [f"seed {s}: {args.color} {c}" for s, c in zip(seeds, color, strict=True)]
    meta = {"format": 1, "figure": "map", "space": args.space, "method": "pca (scikit-learn)", "prompt": args.prompt,
            "seeds": seeds, "explained_variance_ratio": pca.explained_variance_ratio_.tolist(), "color": name,
            "generation": gen, "model": export.model_record(model), "versions": export.versions()}
    about = f"prompt {args.prompt!r}" if args.prompt else "the empty prompt"
    title = args.title or f"PCA of {args.space}: {args.n} samples of {about}, coloured by {name}"
    fig = export.scatter_map(xy, color=color, labels=labels, thumbnails=images, title=title, color_name=name,
                             metadata=meta)
    return export.save_map(fig, args.out, overwrite=args.overwrite)


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from . import export
    from .model import load

    if args.command in ("discover", "report-card"):
        from . import discover

        run = discover.run_discover if args.command == "discover" else discover.run_report_card
        try:
            discover.check_arguments(parser, args)
            model = load(args.model, device=args.device, dtype=args.dtype)
            return run(model, args)
        except (ValueError, TypeError, FileExistsError, FileNotFoundError, KeyError) as error:
            message = str(error).replace("pass overwrite=True", "pass --overwrite").strip("'\"")
            print(f"latentlib {args.command}: {message}", file=sys.stderr)
            return 2
    model = load(args.model, device=args.device, dtype=args.dtype)
    try:
        if args.kind == "map":
            result = _map(model, args)
            print(f"wrote {result['path']} ({result['renderer']})" + (f"; {result['note']}" if result["note"] else ""))
            return 0
        common = {"cell": args.cell, "title": args.title, **_generation(args)}
        if args.kind == "grid":
            fig = export.grid(model, args.prompt, args.seeds, **common)
        elif args.kind == "strip":
            if args.between == "seeds":
                start, end = _seed(parser, "start", args.start), _seed(parser, "end", args.end)
            else:
                start, end = args.start, args.end
            fig = export.strip(model, start, end, between=args.between, n=args.n, method=args.method,
                               prompt=args.prompt, seed=args.seed, **common)
        else:
            directions = [prompt_direction(model, a, b) for a, b in args.direction_prompts]
            prompt = args.prompt if args.prompt is not None else args.direction_prompts[0][0]
            fig = export.sweep(model, directions[0] if len(directions) == 1 else directions, args.strengths,
                               seeds=args.seeds, prompt=prompt, **common)
        path = fig.save(args.out, overwrite=args.overwrite)
    except (ValueError, TypeError, FileExistsError) as error:
        message = str(error).replace("pass overwrite=True", "pass --overwrite")
        print(f"latentlib figure {args.kind}: {message}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
