"""Scripted discovery: ``latentlib discover`` and ``latentlib report-card`` (see ``latentlib <command> --help``).

``discover`` collects samples of one space for seeds ``seed_start .. seed_start + n - 1`` and the given
prompts (cycled over the seeds), chunk by chunk through :func:`latentlib.collect` (each chunk is cached on
disk, so an interrupted run picks up where it stopped and a repeated run loads instead of generating),
finds directions and adds them to a :class:`~latentlib.directions.DirectionBank` (created if missing; a
direction of the same name is replaced only with ``--overwrite``).

Methods: ``pca`` (the top ``--components`` principal directions; with ``--align`` the probe reads every
sample and the table of |correlation| between each component and each continuous factor is printed and
stored in each direction's provenance; rotation, an angle, enters as the circular-linear correlation, see
:func:`alignment`), and the supervised ``mean-diff``, ``logistic``, ``svm`` (two groups: a continuous
``--attribute`` split at its median, or ``name=class`` against the rest) and ``ridge`` (a linear
regression of the attribute on the samples).

:func:`alignment` is the same table as a function, for notebooks. :func:`best_turn` finds the plane of two
PCA components that holds a circular factor as a ring, for a :class:`~latentlib.directions.Turn`.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from .shapes import SYMMETRY

#: The shapes with a rotation (a symmetry order), which the pixel meter can read.
_TURNING_SHAPES = tuple(name for name, order in SYMMETRY.items() if order)

__all__ = ["CONTINUOUS", "add_discover_arguments", "add_report_card_arguments", "alignment", "attribute_values",
           "best_turn", "check_arguments", "circular_correlation", "rotation_angle", "run_discover", "run_report_card"]

CONTINUOUS = ("size", "x", "y", "rotation")
METHODS = ("pca", "mean-diff", "logistic", "svm", "ridge")


def _read_prompts(args) -> list[str]:
    prompts = list(args.prompt or [])
    if args.prompts:
        path = Path(args.prompts)
        if not path.is_file():
            raise FileNotFoundError(f"--prompts {args.prompts!r}: no such file (one prompt per line).")
        prompts += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return prompts or [""]


def add_discover_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, choices=("xT", "z0", "h", "prompt"), help="the space to search")
    p.add_argument("--method", default="pca", choices=METHODS, help="how to find directions (default pca)")
    p.add_argument("--n", type=int, default=512, help="samples (default 512)")
    p.add_argument("--seed-start", type=int, default=0, help="first seed (seeds seed_start .. seed_start+n-1)")
    p.add_argument("--prompt", action="append", default=None,
                   help="a prompt (repeat for several; cycled over the seeds; default: the empty prompt)")
    p.add_argument("--prompts", default=None, help="a text file with one prompt per line (added to --prompt)")
    p.add_argument("--components", type=int, default=8, help="pca: how many components (default 8)")
    p.add_argument("--align", action="store_true",
                   help="pca: read every sample with the probe and print |r| of each component with each factor "
                        "(rotation: the circular-linear correlation, the best |r| with cos(order x angle - phase))")
    p.add_argument("--attribute", default=None,
                   help="supervised methods: a probe reading (size, x, y, rotation: split at the median, or "
                        "regressed by ridge) or NAME=CLASS (e.g. color=red: that class against the rest)")
    p.add_argument("--probe", default=None, help="probe folder (default: the default model's probe)")
    p.add_argument("--h-step", type=int, default=None, help="h: the denoising step whose bottleneck is collected "
                                                            "(default: the middle step)")
    p.add_argument("--h-layer", default=None,
                   help="h: where in the UNet h is taken and edited: bottleneck (default) or a UNet module such as "
                        "up_blocks.0 or mid_block (see latentlib.edits.h_layers)")
    p.add_argument("--timesteps", type=float, nargs=2, default=None, metavar=("HIGH", "LOW"),
                   help="h: the timestep window in which the directions act when applied (default: every step)")
    p.add_argument("--name", default=None, help="direction name (pca: a prefix, default pc -> pc0, pc1, ...; "
                                                "supervised: default the attribute)")
    p.add_argument("--bank", required=True, help="the bank file (NAME.safetensors; created or added to)")
    p.add_argument("--chunk", type=int, default=256, help="samples per cached chunk (default 256)")
    p.add_argument("--cache-dir", default=None, help="sample cache (default ~/.cache/latentlib/samples)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the sample cache")
    p.add_argument("--overwrite", action="store_true", help="replace same-named directions in the bank")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_report_card_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bank", required=True, help="the bank file (NAME.safetensors)")
    p.add_argument("--direction", required=True, help="the direction's name in the bank")
    p.add_argument("--target", default=None, help="the reading it should move (default: the direction's name when "
                                                  "the probe reads it); NAME=CLASS scores that class's probability")
    p.add_argument("--expected-sign", type=int, default=1, choices=(1, -1),
                   help="+1 if positive strengths should raise the target (default), -1 if lower it")
    p.add_argument("--strengths", type=float, nargs="+", default=[-3, -2, -1, 0, 1, 2, 3],
                   help="strengths in standard deviations; must include 0 (default -3 .. 3)")
    p.add_argument("--seeds", type=int, default=8, help="how many seeds (default 8)")
    p.add_argument("--seed-start", type=int, default=0, help="first seed")
    p.add_argument("--prompt", action="append", default=None, help="a prompt (repeat; cycled over the seeds)")
    p.add_argument("--prompts", default=None, help="a text file with one prompt per line")
    p.add_argument("--probe", default=None, help="probe folder (default: the default model's probe)")
    p.add_argument("--image-strength", type=float, default=0.6, help="z0 directions: how far the edited image is "
                                                                     "re-noised before denoising (default 0.6)")
    p.add_argument("--circular", type=float, default=None,
                   help="the target is an angle with this period (e.g. 1.5708 for the probe's rotation of a square, "
                        "6.2832 for radians): each seed's readings are unwrapped along the strengths; for a turn")
    p.add_argument("--rotation-meter", default=None, choices=("auto", *_TURNING_SHAPES),
                   help="also read rotation_angle (symmetry order x rotation, radians) from the pixels "
                        "(latentlib.probes.RotationMeter, about 5x as precise as the probe's rotation head), for "
                        "--target rotation_angle --circular 6.2832; a shape measures every image as that shape "
                        "(one the prompt names), auto as the shape the probe reads (a misread shape makes the "
                        "reading jump)")
    p.add_argument("--follow", type=float, nargs=2, default=None, metavar=("X", "Y"),
                   help="for a turn in xT, z0 or h: roll it, per seed, to where that seed's object is "
                        "(Turn.rolled): the probe's x and y of the unedited image, as whole cells of the turn's "
                        "grid away from X Y, where the turn's samples had their objects (0-1 of the width and "
                        "height, e.g. their median). A turn fitted on objects in one place otherwise misses an "
                        "object that landed elsewhere (bench/README.md)")
    p.add_argument("--format", default="png", choices=("png", "pdf", "svg"), help="figure format (default png)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing files in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def check_arguments(parser: argparse.ArgumentParser, args) -> None:
    """Argument errors that argparse cannot see: reported with ``parser.error`` (exit code 2)."""
    if args.command == "discover":
        if args.n < 2:
            parser.error(f"--n must be at least 2, got {args.n}")
        if args.chunk < 1:
            parser.error(f"--chunk must be at least 1, got {args.chunk}")
        if args.method == "pca" and not 1 <= args.components <= args.n:
            parser.error(f"--components must be in 1 .. --n ({args.n}), got {args.components}")
        if args.method != "pca" and not args.attribute:
            parser.error(f"--method {args.method} is supervised: give --attribute (e.g. x, size, color=red)")
        if args.method == "pca" and args.attribute:
            parser.error("--attribute is for the supervised methods; pca takes --align instead")
        if args.timesteps and args.space != "h":
            parser.error(f"--timesteps applies to h directions, not {args.space}")
        if args.h_step is not None and args.space != "h":
            parser.error(f"--h-step applies to the h space, not {args.space}")
        if args.h_layer is not None and args.space != "h":
            parser.error(f"--h-layer applies to the h space, not {args.space}")
    else:
        if args.seeds < 1:
            parser.error(f"--seeds must be at least 1, got {args.seeds}")
        if 0.0 not in args.strengths or len(set(args.strengths)) < 3:
            parser.error(f"--strengths must hold at least 3 distinct values including 0, got {args.strengths}")
        if args.circular is not None and not (math.isfinite(args.circular) and args.circular > 0):
            parser.error(f"--circular must be the target's period, a number > 0, got {args.circular}")
        if args.target == "rotation_angle" and args.rotation_meter is None:
            parser.error(f"--target rotation_angle is read by the pixel meter: add --rotation-meter SHAPE "
                         f"({', '.join(_TURNING_SHAPES)}) or --rotation-meter auto")
        if args.follow is not None and not all(0 <= v <= 1 for v in args.follow):
            parser.error(f"--follow X Y must be the objects' position as fractions of the width and height "
                         f"(0 to 1), got {' '.join(f'{v:g}' for v in args.follow)}")
        if args.target == "rotation_angle" and args.circular is None:
            parser.error("--target rotation_angle is an angle in radians: add --circular 6.2832 so that each seed's "
                         "readings are unwrapped along the strengths")
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")


def attribute_values(readings: dict, attribute: str) -> tuple[np.ndarray, bool]:
    """The values of ``attribute`` in probe ``readings`` and whether they are continuous.

    ``size``/``x``/``y``: as read. ``rotation``: the probe's angle within the shape's symmetry period.
    ``NAME=CLASS``: a boolean, that class against the rest.
    """
    if "=" in attribute:
        name, cls = attribute.split("=", 1)
        if name not in readings or np.asarray(readings[name]).dtype != object:
            raise ValueError(f"--attribute {attribute!r}: {name!r} is not a class reading of the probe "
                             f"(use shape, color or background).")
        values = np.asarray(readings[name]) == cls
        if not values.any():
            raise ValueError(f"--attribute {attribute!r}: no sample was read as {cls!r}; check the spelling or "
                             f"the prompts.")
        return values, False
    if attribute not in readings or np.asarray(readings[attribute]).dtype in (object, bool):
        numeric = [k for k, v in readings.items() if not k.endswith("_prob") and np.asarray(v).dtype not in (object, bool)]
        raise ValueError(f"--attribute {attribute!r} is not a reading of the probe; use one of {', '.join(numeric)} "
                         f"or NAME=CLASS (e.g. color=red).")
    return np.asarray(readings[attribute], dtype=np.float64), True


def circular_correlation(x: np.ndarray, angle: np.ndarray) -> tuple[float, float]:
    """The circular-linear correlation of a linear variable ``x`` with an angle (Mardia 1976) and its phase.

    ``R`` is the multiple correlation of ``x`` with (cos angle, sin angle), which equals the largest Pearson
    |r| of ``x`` with ``cos(angle - phase)`` over all phases; returns ``(R, phase)``, ``phase`` in radians,
    the phase where ``x`` peaks. An angle has no natural zero (a square turned by 90 degrees is the same
    square), so this is the measure of "x follows the angle" that does not depend on where zero was put.
    With ``n`` independent samples ``R**2`` has expectation about ``2 / n`` when ``x`` ignores the angle.
    """
    x = np.asarray(x, dtype=np.float64)
    angle = np.asarray(angle, dtype=np.float64)
    if x.shape != angle.shape or x.ndim != 1:
        raise ValueError(f"`x` and `angle` must be 1-D of the same length, got shapes {x.shape} and {angle.shape}.")
    if len(x) < 4 or x.std() == 0:
        return 0.0, 0.0
    design = np.stack([np.cos(angle), np.sin(angle), np.ones_like(angle)], axis=1)
    coef, *_ = np.linalg.lstsq(design, x, rcond=None)
    fitted = design @ coef
    residual = float(((x - fitted) ** 2).sum())
    total = float(((x - x.mean()) ** 2).sum())
    r = math.sqrt(max(0.0, 1.0 - residual / total))
    return r, float(math.atan2(coef[1], coef[0]))


def rotation_angle(readings: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, angle)``: the samples with an object whose shape has a rotation (not circles), and symmetry
    order x rotation for every sample (radians; a square's 4 x angle, so that one period of the shape is
    one turn)."""
    present = np.asarray(readings.get("present", np.ones(len(readings["rotation"]), bool)), dtype=bool)
    names = np.asarray(readings.get("shape"), dtype=object)
    order = np.array([SYMMETRY.get(s, 0) if s is not None else 0 for s in names], dtype=np.float64)
    return present & (order > 0), order * np.asarray(readings["rotation"], dtype=np.float64)


def best_turn(pca, X, angle, *, components: int | None = None, **turn_kwargs):
    """The :class:`~latentlib.directions.Turn` in the plane of two of ``pca``'s components whose angle on
    samples ``X`` follows ``angle`` (radians, one per sample: a circular factor, such as the symmetry order x
    rotation of :func:`rotation_angle`) best, turned so that positive strengths raise ``angle``.

    Every pair among the first ``components`` (default: all) is tried both ways round; the fit is the mean
    resultant length of the difference between the turn's angle and ``angle`` (1: they differ by a fixed
    offset; near 0: unrelated). Returns ``(turn, fit)``; ``turn_kwargs`` go to :meth:`PCADirections.turn`.
    """
    from dataclasses import replace

    angle = np.asarray(angle, dtype=np.float64)
    if angle.ndim != 1 or len(angle) != len(X):
        raise ValueError(f"`angle` must hold one value per sample of `X` ({len(X)}), got shape {angle.shape}.")
    if not np.isfinite(angle).all():
        raise ValueError(f"`angle` has {int((~np.isfinite(angle)).sum())} values that are NaN or inf; pass the "
                         f"samples that have an angle (e.g. the `keep` of rotation_angle).")
    k = pca.n_components if components is None else components
    if not isinstance(k, int) or isinstance(k, bool) or not 2 <= k <= pca.n_components:
        raise ValueError(f"`components` must be an int in 2..{pca.n_components}, got {components!r}.")
    best = None
    for i in range(k):
        for j in range(i + 1, k):
            turn = pca.turn(i, j, **turn_kwargs)
            read = turn.angle(X)
            for sign in (1, -1):
                fit = float(abs(np.mean(np.exp(1j * (read - sign * angle)))))
                if best is None or fit > best[0]:  # turned the other way round keeps its name
                    best = (fit, turn if sign > 0 else replace(-turn, name=turn.name))
    return best[1], best[0]


def alignment(scores: np.ndarray, readings: dict, factors=CONTINUOUS) -> dict[str, list[float]]:
    """|Pearson r| of each column of ``scores`` (N, K) with each factor, over samples with an object.

    Rotation is circular, so it enters as the circular-linear correlation (:func:`circular_correlation`) of
    each column with symmetry order x angle, over samples whose shape has a rotation (not circles): the best
    |r| with ``cos(order * angle - phase)`` over phases."""
    present = np.asarray(readings.get("present", np.ones(len(scores), bool)), dtype=bool)
    out = {}
    for factor in factors:
        if factor not in readings:
            continue
        row = []
        if factor == "rotation":
            keep, angle = rotation_angle(readings)
            for k in range(scores.shape[1]):
                row.append(circular_correlation(scores[keep, k], angle[keep])[0])
        else:
            col = np.asarray(readings[factor], dtype=np.float64)
            for k in range(scores.shape[1]):
                a, b = scores[present, k], col[present]
                ok = present.sum() > 2 and a.std() > 0 and b.std() > 0
                row.append(abs(float(np.corrcoef(a, b)[0, 1])) if ok else 0.0)
        out[factor] = row
    return out


def _collect(model, args, prompts, need_probe):
    import torch

    from .collect import collect

    probe = _probe(args) if need_probe else None
    seeds = list(range(args.seed_start, args.seed_start + args.n))
    xs, labels = [], {}
    for begin in range(0, len(seeds), args.chunk):
        chunk = seeds[begin : begin + args.chunk]
        ps = [prompts[(begin + i) % len(prompts)] for i in range(len(chunk))]
        s = collect(model, args.space, prompts=ps, seeds=chunk, steps=args.steps, guidance=args.guidance,
                    scheduler=None if args.scheduler == "default" else args.scheduler, h_step=args.h_step,
                    h_layer=args.h_layer, probe=probe, cache=not args.no_cache, cache_dir=args.cache_dir,
                    progress=not args.quiet)
        xs.append(s.X)
        for k, v in (s.labels or {}).items():
            labels.setdefault(k, []).append(np.asarray(v))
        settings = s.settings
    X = torch.cat(xs)
    return X, {k: np.concatenate(v) for k, v in labels.items()}, settings


def _probe(args):
    from .probes import load_probe

    return load_probe(args.probe)


def run_discover(model, args) -> int:
    import torch

    from .directions import DirectionBank, LinearBoundary, MeanDifference, PCADirections, RidgeDirection

    prompts = _read_prompts(args)
    bank_path = Path(args.bank)
    bank = DirectionBank.load(bank_path, model=model) if bank_path.exists() else DirectionBank(model=model)
    need_probe = args.method != "pca" or args.align
    X, readings, settings = _collect(model, args, prompts, need_probe)
    base = {"prompts": prompts if len(prompts) <= 32 else f"{len(prompts)} prompts", "seed_start": args.seed_start,
            "n": args.n, "steps": args.steps, "guidance": args.guidance, "scheduler": args.scheduler,
            "h_step": settings.get("h_step"), "h_layer": settings.get("h_layer"), "model": settings["model"]}
    layer = settings.get("h_layer")
    made = []
    if args.method == "pca":
        pca = PCADirections(args.components, method="auto").fit(X, space=args.space)
        table = alignment(pca.transform(X), readings) if args.align else None
        prefix = args.name or "pc"
        for i in range(args.components):
            prov = {**base, **({"alignment": {f: table[f][i] for f in table}} if table else {})}
            made.append(pca.direction(i, name=f"{prefix}{i}", provenance=prov, layer=layer))
        if table:
            print("|r| of each component with each factor (over samples with an object):")
            print("component " + "".join(f"{f:>10}" for f in table))
            for i in range(args.components):
                print(f"{prefix + str(i):9} " + "".join(f"{table[f][i]:10.3f}" for f in table))
    else:
        values, continuous = attribute_values(readings, args.attribute)
        keep = np.asarray(readings["present"], dtype=bool) if "present" in readings else np.ones(len(X), bool)
        Xk, vk = X[torch.from_numpy(keep)], values[keep]
        if args.method == "ridge":
            finder = RidgeDirection().fit(Xk, vk.astype(np.float64))
        else:
            groups = vk > np.median(vk) if continuous else vk
            if groups.all() or not groups.any():
                raise ValueError(f"--attribute {args.attribute!r} puts every sample in one group; there is nothing "
                                 f"to separate.")
            finder = (MeanDifference() if args.method == "mean-diff"
                      else LinearBoundary("logistic" if args.method == "logistic" else "svm")).fit(Xk, groups)
        name = args.name or args.attribute
        made.append(finder.direction(args.space, name=name, X=Xk,
                                     provenance={**base, "attribute": args.attribute, "method_cli": args.method},
                                     layer=layer))
    if args.timesteps:
        from dataclasses import replace

        made = [replace(d, timesteps=tuple(args.timesteps)) for d in made]
    clashes = [d.name for d in made if d.name in bank]
    if clashes and not args.overwrite:
        raise ValueError(f"the bank {bank_path} already has {', '.join(clashes)}; pass --overwrite to replace "
                         f"(nothing was written).")
    for d in made:
        bank.add(d, overwrite=True)
    bank.save(bank_path, overwrite=True)
    print(f"wrote {len(made)} direction(s) to {bank_path}: {', '.join(d.name for d in made)}")
    return 0


def run_report_card(model, args) -> int:
    from .directions import DirectionBank
    from .report import report_card

    bank = DirectionBank.load(args.bank, model=model)
    direction = bank[args.direction]
    prompts = _read_prompts(args)
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{out} is not empty; pass --overwrite to replace its files (nothing was written).")
    kwargs = {"scheduler": args.scheduler} if args.scheduler != "default" else {}
    if args.negative_prompt is not None:
        kwargs["negative_prompt"] = args.negative_prompt
    if args.follow is not None and not getattr(direction, "rollable", False):
        raise ValueError(f"--follow rolls a turn on its samples' grid; {args.direction!r} is a "
                         f"{type(direction).__name__} in {direction.space}, not a Turn in xT, z0 or h.")
    probe = _probe(args)
    follow = None
    if args.follow is not None:
        from .report import follow_object

        follow = follow_object(probe, centre=tuple(args.follow), cells=tuple(direction.vectors.shape[-2:]))
    if args.rotation_meter is not None:
        from .probes import RotationMeter

        probe = RotationMeter(probe, None if args.rotation_meter == "auto" else args.rotation_meter)
    card = report_card(model, direction, probe, target=args.target, strengths=args.strengths, seeds=seeds,
                       prompts=prompts, expected_sign=args.expected_sign, steps=args.steps, guidance=args.guidance,
                       image_strength=args.image_strength, circular=args.circular, follow=follow,
                       progress=not args.quiet, **kwargs)
    paths = card.save(out, overwrite=args.overwrite, figure_format=args.format)
    t = card.target_row
    print(f"{direction.name} -> {card.target}: monotone on {100 * t['monotone_share']:.1f}% of seeds "
          f"(median rho {t['spearman_median']:.3f}), effect {t['effect_per_unit']:.4g} per unit, "
          f"R^2 {t['linearity_r2']:.3f}")
    for name, row in card.summary.iloc[1:].iterrows():
        if not math.isnan(row["changed_share"]):
            print(f"  {name}: changed on {100 * row['changed_share']:.1f}% of edits")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    from .cli import main

    sys.exit(main(sys.argv[1:]))
