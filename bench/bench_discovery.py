"""Direction discovery on the default model, scored against its known factors (issue 4's measured bars).

1. Unsupervised recovery: 2,000 samples per space and prompt set, PCA top 8, and the matrix of |Pearson r|
   between each component's scores and each continuous factor as the probe reads it (size, x, y; rotation,
   an angle, by the circular-linear correlation with symmetry order x angle: the best |r| with cos(order x
   angle - phase) over phases, see latentlib.discover.circular_correlation). Sets: one fixed prompt (only
   the seed varies), 40 colour+shape prompts, one prompt that names the position ("a red square in the
   center ...") and one that also names the size ("a large red square in the center ...", so that rotation
   is what the seed varies most after the position's jitter), and training captions for the prompt space.
   Spaces: xT, z0, h at the bottleneck and h at ``--h-layer``; each h set also as the spatial mean of every
   channel (a position-invariant view of the same samples). Bar: for each factor, some component reaches
   |r| >= 0.7 in at least one space.
2. Supervised directions for size, x and y: ridge regression on ``--supervised-n`` h samples at
   ``--h-layer`` (prompts naming colour, shape and a black background). The ridge penalty is chosen on
   validation cards (other seeds, other prompts) from ``--alphas``, then, with that penalty, the steps the
   edit acts on (every step, or from each of ``--window-starts`` to the last); the chosen direction is then
   scored on the test cards (32 seeds, strengths -3..3). Object colour: blue against the rest in h
   (logistic and ridge, fitted on the colour-naming samples above, scored on colour-free prompts), in z0
   (mean difference, decoded without re-noising, on prompts that name another colour; for blue and for
   cyan, the end of the VAE's hue axis), and warm against cool hues in h fitted and scored on colour-free
   prompts, read as the object's red channel (the axis the model lays its hues on). Bar: Spearman >= 0.9 on
   >= 90% of seeds, shape and background changed on <= 5% of edits.
   Colour geometry of the VAE: how well a linear map reads a latent cell's colour (its 8x8 patch's mean
   RGB) against a 10-nearest-neighbour reading, and where each hue's object cells lie along the first
   principal axis of the hue means (why a straight line in z0 from red to blue passes other hues).
3. Rotation, which no caption names: PCA over the centred-squares samples (h at ``--h-layer``, both
   centred sets, and z0), the component with the largest circular-linear correlation with 4 x angle (a
   square's rotation is modulo 90 degrees) and the phase where it peaks, and its report card read as
   cos(4 x angle - phase) on the same prompt, over strengths -3..3 and again over -1.5..1.5 (a component
   that follows cos(angle - phase) spans the whole turn within about +-1.4 of its standard deviations).
4. Rotation as a turn (``latentlib.Turn``): a line through a circle stalls at its ends, so the rotation
   is also edited as a turn round the ring that two components hold. For each centred-squares set in h,
   the pair of the top 8 components whose plane angle follows 4 x angle best (the mean resultant length
   of their difference), oriented so that positive strengths turn the angle up; the degrees per unit are
   chosen on the validation cards from ``--turn-degrees``, then the test card is read as the angle itself,
   unwrapped along the strengths (``report_card(circular=2 pi)``). The angle is read from the pixels by
   ``latentlib.probes.RotationMeter`` (the phase of the square's 4th-order moment: standard deviation about
   0.9 degrees of 4 x angle on rendered squares, against 4.5 for the probe's rotation head, while a turn
   moves 4 x angle by 5.6-9.4 degrees per unit); the probe head's share is reported beside it. Turn cards
   run on 3 x ``--seeds`` seeds (96): the validation cards use all of them, and the test card's rule is
   read on its first 32 (50000-50031, as every other card), with the share over all 96 beside it.
   Each card runs twice: the plain turn, and the turn that follows the object (``report_card(follow=
   latentlib.report.follow_object(...))``: per seed, the turn's vectors rolled on h's grid by the unedited
   object's offset, in whole cells, from the samples' median x, y), each with its degrees chosen on
   validation.
   ``--turn-only`` runs this part alone (writing ``discovery_turn.json`` unless ``--out`` says otherwise).

Prints the tables and writes JSON (default bench/results/discovery.json) plus the report cards (CSV,
Markdown, PNG) under bench/results/discovery/. Samples are cached (latentlib.collect), so a second run
only re-scores.

    python bench/bench_discovery.py            # the full measurement (about an hour on 2 cores, uncached)
    python bench/bench_discovery.py --quick    # smoke run: 32 samples, 2 seeds, one alpha
    python bench/bench_discovery.py --model runs/model --probe runs/probe --out bench/results/discovery_other.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

import latentlib as ll
from latentlib import shapes
from latentlib.collect import collect
from latentlib.discover import alignment, best_turn, circular_correlation, rotation_angle
from latentlib.probes import RotationMeter, load_probe
from latentlib.report import _spearman, _unwrap_rows, border_region, follow_object

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import environment, positive_numbers, write_report

ONE_PROMPT = "a red square on a black background"  # seeds alone vary x, y, size and rotation
CENTRED_PROMPT = "a large red square in the center on a black background"  # size and position named
CENTRED_ANY_SIZE = "a red square in the center on a black background"  # position named, size free
VALIDATION_SEEDS, TEST_SEEDS, FREE_COLOUR_SEEDS = 60_000, 50_000, 200_000
#: Part 4's turn cards run on three times --seeds (validation and test); the test card's rule is read on the
#: first --seeds of them, as every other card's.
TURN_SEED_FACTOR = 3


class RotationProbe:
    """The default probe plus ``rotation_phase``: cos(symmetry order x angle - ``phase``), the reading that a
    component following the angle at that phase should raise (1 at the phase, -1 half a period away)."""

    def __init__(self, probe, phase: float = 0.0):
        self.probe, self.classes, self.phase = probe, probe.classes, float(phase)

    def __call__(self, images):
        readings = self.probe(images)
        _, angle = rotation_angle(readings)
        return {**readings, "rotation_phase": np.cos(angle - self.phase)}


def _turn_shares(c, rule_seeds: int) -> dict:
    """A turn card's shares of monotone seeds (the card's own rule: expected sign x Spearman of the unwrapped
    angle >= its ``monotone_at``) over its first ``rule_seeds`` seeds and over all, read by the card's target
    (the pixel meter) and by the probe's rotation head (symmetry order x its rotation, unwrapped the same
    way); ``bar_met`` is the rule over the first ``rule_seeds`` seeds, with shape and background kept."""
    at, sign = c.settings["monotone_at"], c.expected_sign
    period = c.settings["circular"]
    strengths = np.asarray(c.strengths, dtype=np.float64)
    zero = list(c.strengths).index(0.0)
    head = []
    for _, g in c.readings.sort_values(["seed", "strength"]).groupby("seed", sort=True):
        _, angle = rotation_angle({k: g[k].to_numpy() for k in ("rotation", "shape", "present")})
        unwrapped = _unwrap_rows(angle[None], period, zero)[0]
        head.append(_spearman(strengths, unwrapped) if np.isfinite(unwrapped).all() else np.nan)
    meter = c.per_seed.sort_values("seed")["spearman"].to_numpy()
    head, first = np.asarray(head), min(rule_seeds, len(meter))

    def share(rho):  # NaN (a seed without a reading): not monotone
        return float(np.mean(rho * sign >= at))

    row = {"seeds": len(meter), "rule_seeds": first, "monotone_rule": share(meter[:first]),
           "followed_shifted": (float(np.mean((c.per_seed["dy"] != 0) | (c.per_seed["dx"] != 0)))
                                if "dy" in c.per_seed else None),
           "monotone_all": share(meter), "probe_head_monotone_rule": share(head[:first]),
           "probe_head_monotone_all": share(head)}
    # shape and background changes (the class read at an edited strength differs from strength 0's), over the
    # rule's seeds and over all; the card's own summary is the latter
    readings = c.readings.sort_values(["seed", "strength"])  # a row per seed (in seed order), a column per strength
    for factor in ("shape", "background"):
        values = readings[factor].to_numpy().reshape(len(meter), len(strengths))
        changed = (values != values[:, zero: zero + 1])[:, np.arange(len(strengths)) != zero]
        row[f"{factor}_changed_rule"] = float(changed[:first].mean())
        row[f"{factor}_changed_all"] = float(changed.mean())
    # the rule, as for every other card: its 32 seeds' edits; and the same over all the card's seeds
    for scope in ("rule", "all"):
        row["bar_met" if scope == "rule" else "bar_met_all"] = (
            row[f"monotone_{scope}"] >= 0.9 and row[f"shape_changed_{scope}"] <= 0.05
            and row[f"background_changed_{scope}"] <= 0.05)
    return row


def turn_section(model, plain, card, *, layer: str, n: int, degrees: list[float], val_seeds, test_seeds,
                 rule_seeds: int, variants=("plain", "followed")) -> dict:
    """Part 4: rotation edited as a turn in h (see the module docstring); returns its report entries."""
    found, turn_cards = {}, {}
    probe = RotationMeter(plain, "square")  # the prompts name a square: a misread shape cannot change the order
    for name, prompt in (("centred squares", CENTRED_ANY_SIZE), ("centred large squares", CENTRED_PROMPT)):
        s = collect(model, "h", h_layer=layer, prompts=[prompt] * n, seeds=list(range(n)), probe=plain, progress=True)
        pca = ll.PCADirections(8).fit(s.X, space="h")
        keep, angle = rotation_angle(s.labels)
        X = s.X[torch.from_numpy(keep)]
        best, r = best_turn(pca, X, angle[keep], layer=layer)
        (i, j), sign = best.provenance["components"], -1 if best.provenance.get("negated") else 1
        key = f"h@{layer} ({name})"
        found[key] = {"components": [i, j], "mean_resultant": round(r, 3), "orientation": sign,
                      "explained_variance_ratio": [round(float(pca.explained_variance_ratio_[c]), 4) for c in (i, j)]}
        print(f"\nrotation as a turn in {key}: pc{i}-pc{j} plane angle follows {'+' if sign > 0 else '-'}4 x angle, "
              f"mean resultant {r:.2f}")
        # the followed turn: rolled per seed by its object's offset (whole cells of h's grid) from where the
        # samples had theirs (their median x, y)
        present = np.asarray(s.labels["present"], dtype=bool)
        centre = tuple(float(np.median(np.asarray(s.labels[k], dtype=np.float64)[present])) for k in ("x", "y"))
        cells = tuple(int(c) for c in best.vectors.shape[-2:])  # (rows, columns) of h's grid
        found[key].update({"follow_centre": [round(v, 4) for v in centre], "follow_cells": list(cells)})
        for tag in variants:
            follow = follow_object(plain, centre=centre, cells=cells) if tag == "followed" else None
            variant = " followed" if tag == "followed" else ""
            tried = []
            for deg in degrees:
                turn = dataclasses.replace(best, degrees=deg, name=f"rotation turn (pc{i}-pc{j})")
                row = card(f"validation {key}{variant} turn {deg:g} deg", turn, "rotation_angle", [prompt], val_seeds,
                           save=False, probe_=probe, circular=2 * np.pi, follow=follow,
                           also=lambda c: _turn_shares(c, len(c.per_seed)))
                tried.append((deg, turn, row))
            deg, turn, _ = _best(tried)
            found[key][tag] = {"degrees": deg, "validation": {f"{d:g}": row for d, _, row in tried}}
            # the test card's rule is read on its first --seeds seeds (as every other card's); the rest tighten
            # the estimate
            row = card(f"h@{layer} {name}: rotation turn{variant}", turn, "rotation_angle", [prompt], test_seeds,
                       probe_=probe, circular=2 * np.pi, follow=follow, also=lambda c: _turn_shares(c, rule_seeds))
            print(f"    test seeds {test_seeds[0]}-{test_seeds[row['rule_seeds'] - 1]} (the rule's): meter "
                  f"{100 * row['monotone_rule']:.1f}%, probe head {100 * row['probe_head_monotone_rule']:.1f}%, "
                  f"shape changed {100 * row['shape_changed_rule']:.1f}%: {'MET' if row['bar_met'] else 'not met'}; "
                  f"all {row['seeds']}: meter {100 * row['monotone_all']:.1f}%, probe head "
                  f"{100 * row['probe_head_monotone_all']:.1f}%, shape changed {100 * row['shape_changed_all']:.1f}%: "
                  f"{'MET' if row['bar_met_all'] else 'not met'}", flush=True)
            turn_cards[f"h@{layer} {name}: rotation turn{variant}"] = row
    return {"rotation_turn": found, "turn_cards": turn_cards}


class ObjectRedProbe:
    """The default probe plus ``object_red``: the mean red channel (0-1) of the object's pixels (those that
    differ from the border colour, :func:`latentlib.report.border_region`)."""

    def __init__(self, probe):
        self.probe, self.classes = probe, probe.classes

    def __call__(self, images):
        mask = border_region(images).to(images.dtype)
        red = (images[:, 0] * mask).sum(dim=(-2, -1)) / mask.sum(dim=(-2, -1)).clamp(min=1)
        return {**self.probe(images), "object_red": red.numpy()}


def _prompts_named(n: int, *, step: int = 1, offset: int = 0, background: str | None = None) -> list[str]:
    """``n`` prompts cycling over the 40 (colour, shape) pairs (pair ``(step * i + offset) % 40``)."""
    pairs = [(c, s) for c in shapes.COLORS for s in shapes.SHAPES]
    tail = f" on a {background} background" if background else ""
    return [f"a {pairs[(step * i + offset) % len(pairs)][0]} {pairs[(step * i + offset) % len(pairs)][1]}{tail}"
            for i in range(n)]


def _best(tried: list[tuple]) -> tuple:
    """Of ``(key, direction, card row)`` triples: the most monotone seeds among those that change shape and
    background on <= 5% of edits (all of them if none does), then the larger effect."""
    ok = [t for t in tried if t[2]["shape_changed"] <= 0.05 and t[2]["background_changed"] <= 0.05] or tried
    return max(ok, key=lambda t: (t[2]["monotone_share"], t[2]["effect_per_unit"]))


def _timesteps(model, steps: int) -> list[float]:
    """The timesteps of the model's scheduler for ``steps`` steps (a copy is set, the model's is untouched)."""
    scheduler = copy.deepcopy(model.scheduler)
    scheduler.set_timesteps(steps)
    return [float(t) for t in scheduler.timesteps]


def _card_row(card) -> dict:
    t, s = card.target_row, card.summary
    row = {"target": card.target, "expected_sign": card.expected_sign, "monotone_share": t["monotone_share"],
           "spearman_median": t["spearman_median"], "effect_per_unit": t["effect_per_unit"],
           "linearity_r2": t["linearity_r2"], "saturation": t["saturation"], "sign_share": t["sign_share"],
           "shape_changed": float(s.loc["shape", "changed_share"]),
           "background_changed": float(s.loc["background", "changed_share"]),
           "color_changed": float(s.loc["color", "changed_share"]),
           "latent_change": t["latent_change"], "pixel_change_outside": t["pixel_change_outside"]}
    row["bar_met"] = row["monotone_share"] >= 0.9 and row["shape_changed"] <= 0.05 and row["background_changed"] <= 0.05
    return row


def _print_card(name: str, c: dict) -> None:
    print(f"{name:34} monotone {100 * c['monotone_share']:5.1f}%  rho {c['spearman_median']:+.2f}  "
          f"effect {c['effect_per_unit']:+.4f}/unit  shape changed {100 * c['shape_changed']:4.1f}%  "
          f"background {100 * c['background_changed']:4.1f}%  {'MET' if c['bar_met'] else 'not met'}", flush=True)


def _captions(n: int, start: int) -> list[str]:
    return [shapes.caption(shapes.sample_scene(start + i), seed=start + i) for i in range(n)]


def colour_geometry(model, n: int = 400) -> dict:
    """How the VAE lays out colour: linear and 10-nearest-neighbour R^2 of each latent cell -> its 8x8 patch's
    mean RGB (held-out quarter of the cells of ``n`` test scenes), and each hue's mean object-centre cell
    projected on the first principal axis of the hue means (large objects, so the centre cell is inside)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression
    from sklearn.neighbors import KNeighborsRegressor

    images, labels, _ = shapes.make_dataset(n, "test")
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        z = model.encode(pixels).float()
    f = model.vae_scale_factor
    cells = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).numpy()
    rgb = torch.nn.functional.avg_pool2d(pixels, f).permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    cut = len(cells) * 3 // 4
    linear = LinearRegression().fit(cells[:cut], rgb[:cut]).score(cells[cut:], rgb[cut:])
    knn = KNeighborsRegressor(10).fit(cells[:cut], rgb[:cut]).score(cells[cut:], rgb[cut:])
    side = z.shape[-1]
    centres = {c: [] for c in shapes.COLORS}
    for i, label in enumerate(labels):
        if label["present"] and label["size"] > 0.2:
            cx, cy = (min(int(label[k] * side), side - 1) for k in ("x", "y"))
            centres[label["color"]].append(z[i, :, cy, cx].numpy())
    means = np.stack([np.mean(centres[c], axis=0) for c in shapes.COLORS])
    axis = PCA(1).fit(means)
    scores = axis.transform(means)[:, 0]
    scores = scores if scores[list(shapes.COLORS).index("red")] < 0 else -scores
    order = np.argsort(scores)
    return {"linear_r2": round(float(linear), 3), "knn_r2": round(float(knn), 3), "n_scenes": n,
            "hue_axis": {list(shapes.COLORS)[k]: round(float(scores[k]), 2) for k in order},
            "hue_axis_explained": round(float(axis.explained_variance_ratio_[0]), 3)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="samples per space (unsupervised)")
    parser.add_argument("--supervised-n", type=int, default=2000,
                        help="h samples the supervised directions are fitted on")
    parser.add_argument("--h-layer", default="up_blocks.0", help="the UNet block whose output is the second h space")
    parser.add_argument("--alphas", default="54613,81920,109227",
                        help="ridge penalties tried on the validation cards (comma-separated; the defaults are "
                             "27.3, 41 and 54.6 per sample at --supervised-n 2000)")
    parser.add_argument("--window-starts", default="3,5",
                        help="supervised size/x/y: also try the edit from each of these steps (of 20) to the last, "
                             "on the validation cards (comma-separated; empty: every step only)")
    parser.add_argument("--seeds", type=int, default=32, help="report-card seeds")
    parser.add_argument("--turn-degrees", default="7.5,10,12.5",
                        help="part 4: degrees per unit of strength tried for the rotation turn on the validation "
                             "cards (comma-separated)")
    parser.add_argument("--turn-only", action="store_true", help="run part 4 (rotation as a turn) alone")
    parser.add_argument("--turn-variants", default="plain,followed",
                        help="part 4: which turn cards to run, plain (the turn as fitted) and/or followed (rolled "
                             "per seed to its object); comma-separated")
    parser.add_argument("--model", default=None, help="a shapes model folder (default: the shipped model)")
    parser.add_argument("--probe", default=None, help="a probe folder (default: the shipped probe)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None,
                        help="the JSON report (default bench/results/discovery.json; discovery_turn.json with --turn-only)")
    args = parser.parse_args(argv)
    turn_degrees = positive_numbers(parser, "--turn-degrees", args.turn_degrees)
    turn_variants = tuple(v.strip() for v in args.turn_variants.split(",") if v.strip())
    if not turn_variants or not set(turn_variants) <= {"plain", "followed"} or len(set(turn_variants)) < len(turn_variants):
        parser.error(f"--turn-variants must be plain, followed or both (comma-separated), got {args.turn_variants!r}")
    if args.out is None:
        args.out = str(Path(__file__).parent / "results" / ("discovery_turn.json" if args.turn_only else "discovery.json"))
    alphas = positive_numbers(parser, "--alphas", args.alphas)
    try:
        window_starts = [int(k) for k in args.window_starts.split(",") if k.strip()]
    except ValueError:
        window_starts = [0]
    if not window_starts or any(not 0 < k < 20 for k in window_starts):
        parser.error(f"--window-starts must be steps in 1..19, got {args.window_starts!r}")
    if args.quick:
        args.n, args.supervised_n, args.seeds, alphas, window_starts = 32, 48, 2, alphas[:1], window_starts[:1]
        turn_degrees = turn_degrees[:1]
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    cards_dir = out.parent / (out.stem if not args.quick else out.stem + "_quick")
    model = ll.load(args.model) if args.model else ll.load()
    plain = load_probe(args.probe)
    probe = plain
    strengths = [-3, -2, -1, 0, 1, 2, 3]
    layer = args.h_layer
    report = {"benchmark": "discovery", "n": args.n, "supervised_n": args.supervised_n, "seeds": args.seeds,
              "window_starts": window_starts,
              "strengths": strengths, "h_layer": layer, "alphas": alphas,
              "threads": args.threads, "model": args.model or "shipped", "probe": args.probe or "shipped",
              **environment()}
    report["turn_degrees"], report["turn_variants"] = turn_degrees, list(turn_variants)
    cards = {}

    def card(name, direction, target, prompts, seeds, *, sign=1, save=True, probe_=None, strengths_=None, also=None,
             **kwargs):
        c = ll.report_card(model, direction, probe_ or probe, target=target, strengths=strengths_ or strengths,
                           seeds=seeds, prompts=prompts, expected_sign=sign, progress=False, **kwargs)
        if save:
            c.save(cards_dir / name.replace(": ", "_").replace(">", "").replace(" ", "_").replace("@", "_"), overwrite=True)
        row = {**_card_row(c), **(also(c) if also else {})}
        _print_card(name, row)
        return row

    val_seeds = list(range(VALIDATION_SEEDS, VALIDATION_SEEDS + args.seeds))
    test_seeds = list(range(TEST_SEEDS, TEST_SEEDS + args.seeds))
    turn_seeds = {"val_seeds": list(range(VALIDATION_SEEDS, VALIDATION_SEEDS + TURN_SEED_FACTOR * args.seeds)),
                  "test_seeds": list(range(TEST_SEEDS, TEST_SEEDS + TURN_SEED_FACTOR * args.seeds)),
                  "rule_seeds": args.seeds}
    if args.turn_only:
        report.update(turn_section(model, plain, card, layer=layer, n=args.n, degrees=turn_degrees,
                                   variants=turn_variants, **turn_seeds))
        if not args.quick:
            write_report(out, report)
        return report

    # 1. unsupervised recovery
    sets = {"one prompt": [ONE_PROMPT] * args.n, "colour+shape prompts": _prompts_named(args.n),
            "centred large squares": [CENTRED_PROMPT] * args.n, "centred squares": [CENTRED_ANY_SIZE] * args.n,
            "training captions": _captions(args.n, 10**6)}
    plan = [(space, None, name) for space in ("xT", "z0", "h") for name in ("one prompt", "colour+shape prompts")]
    plan += [("z0", None, "centred large squares"), ("h", None, "centred large squares"),
             ("h", layer, "one prompt"), ("h", layer, "centred squares"), ("h", layer, "centred large squares"),
             ("prompt", None, "training captions")]
    matrices, samples = {}, {}
    for space, h_layer, set_name in plan:
        began = time.perf_counter()
        s = collect(model, space, prompts=sets[set_name], seeds=list(range(args.n)), probe=plain, progress=True,
                    **({"h_layer": h_layer} if h_layer else {}))
        collect_s = time.perf_counter() - began
        pca = ll.PCADirections(8).fit(s.X, space=space)
        table = alignment(pca.transform(s.X), s.labels)
        key = f"{space}{'@' + h_layer if h_layer else ''} ({set_name})"
        matrices[key] = {"alignment": table, "explained_variance_ratio": pca.explained_variance_ratio_.tolist(),
                         "collect_seconds": round(collect_s, 1), "from_cache": s.from_cache}
        samples[key] = (s, pca)
        print(f"\n{key}: |r| of PC0..PC7 with each factor")
        for factor, row in table.items():
            print(f"  {factor:9}" + "".join(f"{v:6.2f}" for v in row))
        if space == "h":  # the same samples averaged over positions: a view that position cannot dominate
            pooled = s.X.float().mean(dim=(-2, -1))
            pca_pooled = ll.PCADirections(8).fit(pooled, space=space)
            table = alignment(pca_pooled.transform(pooled), s.labels)
            matrices[f"{key}, spatial mean"] = {"alignment": table, "from_cache": s.from_cache,
                                                 "explained_variance_ratio": pca_pooled.explained_variance_ratio_.tolist()}
            print(f"{key}, spatial mean of each channel: |r| of PC0..PC7")
            for factor, row in table.items():
                print(f"  {factor:9}" + "".join(f"{v:6.2f}" for v in row))
    best = {f: max(((k, int(np.argmax(m["alignment"][f])), max(m["alignment"][f])) for k, m in matrices.items()),
                   key=lambda t: t[2]) for f in ("size", "x", "y", "rotation")}
    report["unsupervised"] = {"matrices": matrices,
                              "best": {f: {"where": w, "component": c, "abs_r": round(r, 3)} for f, (w, c, r) in best.items()},
                              "bar_met": all(r >= 0.7 for _, _, r in best.values())}
    print("\nbest component per factor:", {f: f"{w} pc{c} |r|={r:.2f}" for f, (w, c, r) in best.items()})

    # 2. supervised: ridge at the h layer, its penalty chosen on validation cards, scored on test cards
    print(f"\nsupervised directions at h@{layer}: ridge, alpha chosen from {alphas} on validation cards")
    fit_prompts, fit_seeds = _prompts_named(args.supervised_n, background="black"), list(range(args.supervised_n))
    s = collect(model, "h", h_layer=layer, prompts=fit_prompts, seeds=fit_seeds, probe=plain, progress=True)
    present = np.asarray(s.labels["present"], dtype=bool)
    X = s.X[torch.from_numpy(present)]
    labels = {k: np.asarray(v)[present] for k, v in s.labels.items()}
    val_prompts = _prompts_named(args.seeds, step=11, offset=3, background="black")
    test_prompts = _prompts_named(args.seeds, step=7, background="black")
    selection = {}
    timesteps = _timesteps(model, 20)  # the report cards' 20 steps
    windows = {f"steps {k}-19": (timesteps[k], timesteps[-1]) for k in window_starts}
    for factor in ("size", "x", "y"):
        y = labels[factor].astype(np.float64)
        tried = []
        for alpha in alphas:
            d = ll.RidgeDirection(alpha=alpha).fit(X, y).direction("h", name=factor, X=X, layer=layer)
            row = card(f"validation h@{layer} {factor} a={alpha:g}", d, factor, val_prompts, val_seeds, save=False)
            tried.append((alpha, d, row))
        # most monotone seeds among the penalties that keep shape and background; then the larger effect
        alpha, d, row = _best(tried)
        # then the steps the edit acts on, with that penalty: every step (as fitted), or from step k to the
        # last (the early steps place the object, and an edit there can make it jump rather than slide)
        spans = [("all steps", d, row)]
        for name, window in windows.items():
            dw = dataclasses.replace(d, timesteps=window)
            spans.append((name, dw, card(f"validation h@{layer} {factor} a={alpha:g} {name}", dw, factor,
                                         val_prompts, val_seeds, save=False)))
        span, d, _ = _best(spans)
        selection[factor] = {"alpha": alpha, "steps": span, "timesteps": d.timesteps,
                             "validation": {f"{a:g}": r for a, _, r in tried},
                             "validation_steps": {name: r for name, _, r in spans}}
        cards[f"h@{layer}: {factor}"] = card(f"h@{layer}: {factor}", d, factor, test_prompts, test_seeds)
    report["alpha_selection"] = selection
    free_colour = [f"a {shape} on a {bg} background" for shape in shapes.SHAPES for bg in shapes.BACKGROUNDS]
    blue = labels["color"] == "blue"
    for method, finder in (("logistic", ll.LinearBoundary("logistic").fit(X, blue)),
                           ("ridge", ll.RidgeDirection(alpha=alphas[len(alphas) // 2]).fit(X, blue.astype(np.float64)))):
        cards[f"h@{layer}: colour blue ({method})"] = card(f"h@{layer}: colour blue ({method})",
                                                          finder.direction("h", name="blue", X=X, layer=layer),
                                                          "color=blue", free_colour, test_seeds)
    # h from colour-free prompts (the seed picks the colour, as on the cards), warm against cool: the mean
    # difference between objects whose hue has a high red channel (red, orange, yellow, pink, purple) and
    # the rest (green, cyan, blue); read as the object's mean red channel in the image
    free = collect(model, "h", h_layer=layer, prompts=[free_colour[i % len(free_colour)] for i in range(args.supervised_n)],
                   seeds=list(range(FREE_COLOUR_SEEDS, FREE_COLOUR_SEEDS + args.supervised_n)), probe=plain, progress=True)
    f_present = np.asarray(free.labels["present"], dtype=bool)
    warm = np.array([shapes.COLORS[c][0] > 127 for c in np.asarray(free.labels["color"])[f_present]])
    Xf = free.X[torch.from_numpy(f_present)]
    name = f"h@{layer}: colour red channel (mean difference, colour-free prompts)"
    cards[name] = card(name, ll.MeanDifference().fit(Xf, warm).direction("h", name="red", X=Xf, layer=layer),
                       "object_red", free_colour, test_seeds, probe_=ObjectRedProbe(plain))
    # z0: blue against the rest over the same prompts' images, decoded directly (no re-noising, so the
    # prompt cannot pull the colour back), scored on objects of other colours
    z = collect(model, "z0", prompts=fit_prompts, seeds=fit_seeds, probe=plain, progress=True)
    z_present = np.asarray(z.labels["present"], dtype=bool)
    Z = z.X[torch.from_numpy(z_present)]
    z_colour = np.asarray(z.labels["color"])[z_present]
    # blue lies inside the VAE's hue axis (see colour_geometry), cyan at its end: the second card tests
    # that explanation (an end hue is where a straight line can go without passing it)
    for hue in ("blue", "cyan"):
        name = f"z0: colour {hue} (mean difference, decoded)"
        cards[name] = card(name, ll.MeanDifference().fit(Z, z_colour == hue).direction("z0", name=hue, X=Z),
                           f"color={hue}", [p for p in test_prompts if f" {hue} " not in p], test_seeds,
                           image_strength=0.0)
    report["colour_geometry"] = colour_geometry(model)
    g = report["colour_geometry"]
    print(f"\ncolour in z0: a latent cell's 8x8 patch mean RGB read linearly R^2 {g['linear_r2']:.2f}, by its 10 "
          f"nearest neighbours {g['knn_r2']:.2f}; hues along the first axis of their means: "
          + ", ".join(f"{c} {v:+.1f}" for c, v in g["hue_axis"].items()))

    # 3. rotation: the component of the centred-squares PCA that follows the angle best (circular-linear
    # correlation), its report card read as cos(4 x angle - that component's phase)
    report["rotation_pca"] = {}
    rotation_sets = ((f"h@{layer} (centred large squares)", CENTRED_PROMPT, f"h@{layer}"),
                     (f"h@{layer} (centred squares)", CENTRED_ANY_SIZE, f"h@{layer} centred"),
                     ("z0 (centred large squares)", CENTRED_PROMPT, "z0"))
    for key, prompt, where in rotation_sets:
        sq, pca = samples[key]
        scores = pca.transform(sq.X)
        keep, angle = rotation_angle(sq.labels)
        fits = [circular_correlation(scores[keep, k], angle[keep]) for k in range(8)]
        comp = int(np.argmax([r for r, _ in fits]))
        r, phase = fits[comp]
        report["rotation_pca"][key] = {"component": comp, "circular_r": round(r, 3), "phase": round(phase, 3),
                                       "circular_r_per_component": [round(f[0], 3) for f in fits]}
        print(f"\nrotation in {key}: pc{comp} follows cos(4 angle - {phase:+.2f}) with r = {r:.2f}")
        space_layer = layer if key.startswith("h@") else None
        direction = pca.direction(comp, name=f"rotation (pc{comp})", layer=space_layer)
        rotation_probe = RotationProbe(plain, phase=phase)
        cards[f"{where}: rotation"] = card(f"{where}: rotation", direction, "rotation_phase", [prompt], test_seeds,
                                           probe_=rotation_probe)
        # a turn is a circle: +-sqrt(2) standard deviations of a component that follows cos(angle - phase)
        # already span it, so the card is also read within +-1.5 (beyond, the reading can only saturate)
        cards[f"{where}: rotation +-1.5"] = card(f"{where}: rotation +-1.5", direction, "rotation_phase", [prompt],
                                                 test_seeds, probe_=rotation_probe,
                                                 strengths_=[-1.5, -1, -0.5, 0, 0.5, 1, 1.5])
    report["report_cards"] = cards
    report.update(turn_section(model, plain, card, layer=layer, n=args.n, degrees=turn_degrees,
                               variants=turn_variants, **turn_seeds))
    if not args.quick:
        write_report(out, report)
    return report


if __name__ == "__main__":
    main()
