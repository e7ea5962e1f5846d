"""Object colour as a supervised direction in h or z0, read continuously (issue 4's colour bar).

For each target colour name: ``--n`` samples of ``--space`` (h at ``--h-layer``; or z0: the final latents of the
generations, and on the cards each unedited image's VAE encoding, edited and decoded with ``--image-strength`` of
re-noising, 0 = decoded directly) from colour-free prompts ("a {shape} on a
black background", or the ``--backgrounds`` given; the seed picks the colour, as on the cards), each labelled by
``latentlib.probes.ColourMeter``: the object's mean RGB projected on the axis from the other names' mean
RGB to the target's (a reading from the pixels that moves with every shade, where the probe's colour
names snap between 8 values). A ridge direction fitted to that reading, its penalty chosen from
``--alphas`` on validation cards (seeds 60000.., other than the test seeds), is scored once on the test
cards (seeds 50000.., ``--seeds`` of them, strengths -3..3, the same colour-free prompts). The mean
difference between the samples the probe names the target and the rest is carded beside it (no
selection). Bar: Spearman >= 0.9 on >= 90% of seeds, shape and background changed on <= 5% of edits.

``--model`` takes any shapes model folder; its world (``world.json``: discrete, or continuous hues) is
recorded. The default model (version 10) was continued on the world with ``hue_spread`` 0.5 and draws
shades within each colour name; version 9, trained on the discrete world, drew each name as one exact RGB
(see bench/README.md, sessions 27 and 29).

    python bench/bench_colour.py                                  # the shipped model (~11 min on 2 cores)
    python bench/bench_colour.py --model runs/model --probe runs/probe --out bench/results/colour_other.json
    python bench/bench_colour.py --space z0                       # z0 (penalties 30,100,300), edits decoded directly
    python bench/bench_colour.py --quick                          # smoke run: 32 samples, 2 seeds
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import latentlib as ll
from latentlib import shapes
from latentlib.collect import collect
from latentlib.probes import ColourMeter, load_probe
from latentlib.shapes_model import MODEL_DIR, world

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import environment, positive_numbers, write_report
from bench_discovery import TEST_SEEDS, VALIDATION_SEEDS, _best, _card_row, _print_card

FIT_SEEDS = 300_000  # the samples' seeds (other than every card's)
#: ridge penalties tried by default: h has tens of thousands of dimensions, z0 256 (chosen in session 28)
DEFAULT_ALPHAS = {"h": "2048,8192,27307", "z0": "30,100,300"}


def free_prompts(backgrounds) -> list[str]:
    """Colour-free prompts: every shape on each background (the seed picks the colour)."""
    return [f"a {shape} on a {bg} background" for shape in shapes.SHAPES for bg in backgrounds]


class _Meters:
    """Several meters' readings of the same images, merged (each meter runs its probe: cheap beside the
    generation)."""

    def __init__(self, meters):
        self.meters, self.classes = meters, meters[0].classes
        self.name = " + ".join(m.name for m in meters)

    def __call__(self, images):
        readings = {}
        for m in self.meters:
            readings.update(m(images))
        return readings


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a shapes model folder (default: the shipped model)")
    parser.add_argument("--probe", default=None, help="a probe folder (default: the shipped probe)")
    parser.add_argument("--targets", default="cyan,blue", help=f"colour names, comma-separated ({', '.join(shapes.COLORS)})")
    parser.add_argument("--n", type=int, default=2000, help="samples per target")
    parser.add_argument("--seeds", type=int, default=32, help="seeds per card")
    parser.add_argument("--alphas", default=None,
                        help=f"ridge penalties tried on the validation cards (default {DEFAULT_ALPHAS['h']} in h, "
                             f"{DEFAULT_ALPHAS['z0']} in z0)")
    parser.add_argument("--backgrounds", default="black",
                        help="backgrounds the prompts name, comma-separated, or 'all' (default black, as the x, y and "
                             "size cards of bench_discovery.py)")
    parser.add_argument("--space", choices=("h", "z0"), default="h", help="where the directions live (default h)")
    parser.add_argument("--h-layer", default=None,
                        help="h: the UNet module whose output is edited (default up_blocks.0)")
    parser.add_argument("--image-strength", type=float, default=None,
                        help="z0: how far each edited latent is re-noised and denoised (default 0: decoded directly)")
    parser.add_argument("--out", default=None, help="JSON (default bench/results/colour.json)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 32 samples, 2 seeds, one alpha")
    args = parser.parse_args(argv)
    targets = args.targets.split(",")
    backgrounds = list(shapes.BACKGROUNDS) if args.backgrounds == "all" else args.backgrounds.split(",")
    for bg in backgrounds:
        if bg not in shapes.BACKGROUNDS:
            parser.error(f"--backgrounds: {bg!r} is not one of {', '.join(shapes.BACKGROUNDS)} (or 'all')")
    prompts = free_prompts(backgrounds)
    for target in targets:
        if target not in shapes.COLORS:
            parser.error(f"--targets: {target!r} is not one of {', '.join(shapes.COLORS)}")
    if args.space == "h" and args.image_strength is not None:
        parser.error(f"--image-strength applies to --space z0, not h; got {args.image_strength:g}")
    if args.space == "z0" and args.h_layer is not None:
        parser.error(f"--h-layer applies to --space h, not z0; got {args.h_layer!r}")
    layer = (args.h_layer or "up_blocks.0") if args.space == "h" else None  # the h layer; None in z0
    args.image_strength = args.image_strength or 0.0
    alphas = positive_numbers(parser, "--alphas", args.alphas or DEFAULT_ALPHAS[args.space])
    if not 0 <= args.image_strength < 1:
        parser.error(f"--image-strength must be in [0, 1); got {args.image_strength:g}")
    if args.quick:
        args.n, args.seeds, alphas = 32, 2, alphas[:1]
    for name in ("n", "seeds"):
        if getattr(args, name) < 2:
            parser.error(f"--{name} must be 2 or more; got {getattr(args, name)}")
    out = Path(args.out or Path(__file__).parent / "results" / ("colour_quick.json" if args.quick else "colour.json"))
    cards_dir = out.with_suffix("")
    torch.set_num_threads(2)

    model = ll.load(args.model) if args.model else ll.load()
    folder = Path(args.model).expanduser() if args.model else MODEL_DIR
    plain = load_probe(args.probe)
    strengths = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    val_seeds = list(range(VALIDATION_SEEDS, VALIDATION_SEEDS + args.seeds))
    test_seeds = list(range(TEST_SEEDS, TEST_SEEDS + args.seeds))
    report = {"bench": "colour", **environment(), "model": str(folder), "world": world(folder),
              "probe": str(args.probe or "shipped"), "space": args.space,
              "h_layer": layer,
              "image_strength": args.image_strength if args.space == "z0" else None, "samples": args.n,
              "seeds": args.seeds, "strengths": strengths, "alphas": alphas, "backgrounds": backgrounds, "prompts": prompts,
              "quick": args.quick, "targets": {}}
    tag = f"h@{layer}" if args.space == "h" else "z0"  # names the cards
    where = tag if args.space == "h" else f"z0 (image strength {args.image_strength:g})"
    print(f"model {folder} (world: hue_spread {report['world']['hue_spread']:g}), {where}, "
          f"{args.n} samples per target, cards on {args.seeds} seeds", flush=True)

    def card(name, direction, meter, seeds, *, save=True):
        c = ll.report_card(model, direction, meter, target=meter.key, strengths=strengths, seeds=seeds,
                           prompts=prompts, image_strength=args.image_strength, progress=False)
        if save:
            c.save(cards_dir / name.replace(" ", "_").replace("@", "_").replace(":", ""), overwrite=True)
        row = _card_row(c)
        _print_card(name, row)
        return row

    # one set of samples, labelled toward every target (the cards read one target each)
    meters = {target: ColourMeter(plain, target) for target in targets}
    began = time.perf_counter()
    s = collect(model, args.space, h_layer=layer, prompts=[prompts[i % len(prompts)] for i in range(args.n)],
                seeds=list(range(FIT_SEEDS, FIT_SEEDS + args.n)), probe=_Meters(list(meters.values())), progress=True)
    collect_s = time.perf_counter() - began
    for target, meter in meters.items():
        reading = np.asarray(s.labels[meter.key], dtype=np.float64)
        keep = np.asarray(s.labels["present"], dtype=bool) & np.isfinite(reading)
        X, y = s.X[torch.from_numpy(keep)], reading[keep]
        named = np.asarray(s.labels["color"])[keep] == target
        print(f"\n{target}: {int(keep.sum())} samples with an object ({int(named.sum())} named {target}), "
              f"{meter.key} from {y.min():+.2f} to {y.max():+.2f}; collected in {collect_s:.0f} s "
              f"({'cache' if s.from_cache else 'fresh'})", flush=True)
        tried = []
        for alpha in alphas:
            d = ll.RidgeDirection(alpha=alpha).fit(X, y).direction(args.space, name=f"toward {target}", X=X, layer=layer)
            tried.append((alpha, d, card(f"validation {target} ridge a={alpha:g}", d, meter, val_seeds, save=False)))
        alpha, d, _ = _best(tried)
        entry = {"samples_with_object": int(keep.sum()), "named_target": int(named.sum()),
                 "collect_seconds": round(collect_s, 1), "from_cache": s.from_cache, "alpha": alpha,
                 "validation": {f"{a:g}": row for a, _, row in tried},
                 "ridge": card(f"{tag} {target} ridge", d, meter, test_seeds)}
        if named.any() and not named.all():
            md = ll.MeanDifference().fit(X, named).direction(args.space, name=target, X=X, layer=layer)
            entry["mean_difference"] = card(f"{tag} {target} mean difference", md, meter, test_seeds)
        report["targets"][target] = entry
    report["bar_met"] = {t: e["ridge"]["bar_met"] for t, e in report["targets"].items()}
    print("\nbar (ridge, test cards):", {t: "MET" if met else "not met" for t, met in report["bar_met"].items()})
    write_report(out, report)
    return report


if __name__ == "__main__":
    main()
