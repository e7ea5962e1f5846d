"""Direction discovery on the default model, scored against its known factors (issue 4's measured bars).

1. Unsupervised recovery: 2,000 samples per space and prompt set (xT, z0, h: one fixed prompt, so that
   only the seed varies, and 40 colour+shape prompts; prompt: training captions), PCA top 8, and the
   matrix of |Pearson r| between each component's scores and each continuous factor as the probe reads it
   (size, x, y; rotation as the better of cos and sin of symmetry order x angle). Bar: for each factor,
   some component reaches |r| >= 0.7 in at least one space.
2. Supervised directions for size, x, y (mean difference at the median) and object colour (red -> blue,
   logistic) in h, z0 and (for comparison) xT, fitted on the colour+shape samples; each scored by a report
   card over 32 seeds and strengths -3..3 (z0 edits re-noised to 0.6 and denoised). Bar (h or z0):
   Spearman >= 0.9 on >= 90% of seeds, shape and background changed on <= 5% of edits.
3. Rotation, which no caption names: PCA over squares only (h and z0), the component that best follows
   the rotation, and its report card on cos or sin of 4 x angle (a square's rotation is modulo 90 degrees).

Prints the tables and writes JSON (default bench/results/discovery.json) plus the report cards (CSV,
Markdown, PNG) under bench/results/discovery/. Samples are cached (latentlib.collect), so a second run
only re-scores.

    python bench/bench_discovery.py            # the full measurement (tens of minutes on 2 cores)
    python bench/bench_discovery.py --quick    # smoke run: 32 samples, 2 seeds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import latentlib as ll
from latentlib import shapes
from latentlib.collect import collect
from latentlib.discover import alignment
from latentlib.probes import load_probe

ONE_PROMPT = "a red square on a black background"  # seeds alone vary x, y, size and rotation


class RotationProbe:
    """The default probe plus ``rotation_cos``/``rotation_sin``: cos and sin of (symmetry order x angle)."""

    def __init__(self, probe):
        self.probe, self.classes = probe, probe.classes

    def __call__(self, images):
        r = self.probe(images)
        order = np.array([shapes.SYMMETRY.get(s, 0) if s is not None else 0 for s in r["shape"]], dtype=np.float64)
        angle = order * r["rotation"]
        return {**r, "rotation_cos": np.cos(angle), "rotation_sin": np.sin(angle)}


def _prompts_named(n: int) -> list[str]:
    pairs = [(c, s) for c in shapes.COLORS for s in shapes.SHAPES]
    return [f"a {pairs[i % len(pairs)][0]} {pairs[i % len(pairs)][1]}" for i in range(n)]


def _captions(n: int, start: int) -> list[str]:
    return [shapes.caption(shapes.sample_scene(start + i), seed=start + i) for i in range(n)]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="samples per space")
    parser.add_argument("--seeds", type=int, default=32, help="report-card seeds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "discovery.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.seeds = 32, 2
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    cards_dir = out.parent / (out.stem if not args.quick else out.stem + "_quick")
    model = ll.load()
    probe = RotationProbe(load_probe())
    strengths = [-3, -2, -1, 0, 1, 2, 3]
    report = {"benchmark": "discovery", "n": args.n, "seeds": args.seeds, "strengths": strengths,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads},
              "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "latentlib": ll.__version__}}

    # 1. unsupervised recovery
    sets = {"one prompt": [ONE_PROMPT] * args.n, "colour+shape prompts": _prompts_named(args.n),
            "training captions": _captions(args.n, 10**6)}
    plan = [(space, name) for space in ("xT", "z0", "h") for name in ("one prompt", "colour+shape prompts")]
    plan.append(("prompt", "training captions"))
    matrices, samples = {}, {}
    for space, set_name in plan:
        began = time.perf_counter()
        s = collect(model, space, prompts=sets[set_name], seeds=list(range(args.n)), probe=probe, progress=True)
        collect_s = time.perf_counter() - began
        pca = ll.PCADirections(8).fit(s.X, space=space)
        table = alignment(pca.transform(s.X), s.labels)
        key = f"{space} ({set_name})"
        matrices[key] = {"alignment": table, "explained_variance_ratio": pca.explained_variance_ratio_.tolist(),
                         "collect_seconds": round(collect_s, 1)}
        samples[(space, set_name)] = s
        print(f"\n{key}: |r| of PC0..PC7 with each factor")
        for factor, row in table.items():
            print(f"  {factor:9}" + "".join(f"{v:6.2f}" for v in row))
    best = {f: max(((k, int(np.argmax(m["alignment"][f])), max(m["alignment"][f])) for k, m in matrices.items()),
                   key=lambda t: t[2]) for f in ("size", "x", "y", "rotation")}
    report["unsupervised"] = {"matrices": matrices,
                              "best": {f: {"where": w, "component": c, "abs_r": round(r, 3)} for f, (w, c, r) in best.items()},
                              "bar_met": all(r >= 0.7 for _, _, r in best.values())}
    print("\nbest component per factor:", {f: f"{w} pc{c} |r|={r:.2f}" for f, (w, c, r) in best.items()})

    # 2. supervised directions (mean difference at the median for size/x/y; logistic red vs blue), fitted on
    #    the colour+shape samples of each space, each with a report card over fresh seeds and prompts
    card_seeds = list(range(50_000, 50_000 + args.seeds))
    card_prompts = _prompts_named(args.seeds * 7)[::7]  # a spread of colour/shape pairs
    found = {}
    for space in ("h", "z0", "xT"):
        s = samples[(space, "colour+shape prompts")]
        present = np.asarray(s.labels["present"], dtype=bool)
        X = s.X[torch.from_numpy(present)]
        labels = {k: np.asarray(v)[present] for k, v in s.labels.items()}
        for factor in ("size", "x", "y"):
            y = labels[factor] > np.median(labels[factor])
            found[f"{space}: {factor}"] = (ll.MeanDifference().fit(X, y).direction(space, name=factor, X=X), factor, 1,
                                           card_prompts)
        pick = np.isin(labels["color"], ["red", "blue"])
        Xc = X[torch.from_numpy(pick)]
        blue = ll.LinearBoundary("logistic").fit(Xc, labels["color"][pick] == "blue")
        found[f"{space}: red->blue"] = (blue.direction(space, name="red->blue", X=Xc), "color=blue", 1,
                                        [f"a red {shape}" for shape in shapes.SHAPES])

    # 3. rotation: PCA over squares only (no caption names rotation), the component that follows
    #    cos/sin(4 x angle) best, in h and in z0
    report["rotation_pca"] = {}
    squares_prompts = [f"a {c} square" for c in shapes.COLORS]
    for space in ("h", "z0"):
        sq = collect(model, space, prompts=[squares_prompts[i % 8] for i in range(args.n // 2)],
                     seeds=list(range(args.n // 2)), probe=probe, progress=True)
        pca = ll.PCADirections(8).fit(sq.X, space=space)
        scores = pca.transform(sq.X)
        keep = np.asarray(sq.labels["present"], dtype=bool) & (np.asarray(sq.labels["shape"], dtype=object) == "square")
        corr = {t: [float(np.corrcoef(scores[keep, k], sq.labels[t][keep])[0, 1]) for k in range(8)]
                for t in ("rotation_cos", "rotation_sin")}
        target, comp = max(((t, k) for t in corr for k in range(8)), key=lambda tk: abs(corr[tk[0]][tk[1]]))
        sign = 1 if corr[target][comp] > 0 else -1
        report["rotation_pca"][space] = {"component": comp, "target": target, "r": round(corr[target][comp], 3),
                                         "correlations": corr}
        print(f"\nrotation in {space}: squares-only PCA; pc{comp} follows {target} with r = {corr[target][comp]:.2f}")
        found[f"{space}: rotation"] = (pca.direction(comp, name=f"rotation (pc{comp})"), target, sign, squares_prompts)

    cards = {}
    for name, (direction, target_name, sign, prompts_here) in found.items():
        card = ll.report_card(model, direction, probe, target=target_name, strengths=strengths, seeds=card_seeds,
                              prompts=prompts_here, expected_sign=sign)
        card.save(cards_dir / name.replace(": ", "_").replace(">", "").replace(" ", "_"), overwrite=True)
        t = card.target_row
        s = card.summary
        cards[name] = {"target": target_name, "expected_sign": sign, "monotone_share": t["monotone_share"],
                       "spearman_median": t["spearman_median"], "effect_per_unit": t["effect_per_unit"],
                       "linearity_r2": t["linearity_r2"], "saturation": t["saturation"], "sign_share": t["sign_share"],
                       "shape_changed": float(s.loc["shape", "changed_share"]),
                       "background_changed": float(s.loc["background", "changed_share"]),
                       "color_changed": float(s.loc["color", "changed_share"]),
                       "latent_change": t["latent_change"], "pixel_change_outside": t["pixel_change_outside"]}
        c = cards[name]
        c["bar_met"] = c["monotone_share"] >= 0.9 and c["shape_changed"] <= 0.05 and c["background_changed"] <= 0.05
        print(f"{name:22} monotone {100 * c['monotone_share']:5.1f}%  rho {c['spearman_median']:+.2f}  "
              f"effect {c['effect_per_unit']:+.4f}/unit  shape changed {100 * c['shape_changed']:4.1f}%  "
              f"background {100 * c['background_changed']:4.1f}%  {'MET' if c['bar_met'] else 'not met'}", flush=True)
    report["report_cards"] = cards
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.quick:
        out.write_text(json.dumps(report, indent=2, default=float))
        print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
