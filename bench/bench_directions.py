"""Direction-finding speed on 2 cores (issue 4's bars: PCA top-32 of 10,000 x 16,384 float32 <= 5 s;
UMAP of 10,000 points <= 30 s), and collection throughput per space on the default model.

Prints a table and writes JSON (default bench/results/directions.json). Data: random low-rank signal plus
noise, so the solvers have real structure to find; each PCA method's top component is compared with the
planted one. UMAP (latentlib.UMAPMap, default settings, random_state=0) is timed twice in one process:
"cold" includes numba's compilation of umap-learn's kernels (cached on disk after the first run ever),
"warm" does not. It maps the 10,000 samples' 64-value planted coordinates, and the 10,000 x 16,384
samples themselves (PCA to 50 first, as UMAPMap does).

    python bench/bench_directions.py              # full size
    python bench/bench_directions.py --quick      # 1,000 x 1,024, no collection: the smoke run the tests do
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import latentlib as ll

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import environment, write_report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=16_384)
    parser.add_argument("--components", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--incremental", action="store_true",
                        help="also time IncrementalPCA (minutes at full size: it is for data that does not fit in memory)")
    parser.add_argument("--collect-n", type=int, default=64, help="samples per space for collection throughput")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "directions.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.dim = 1000, 1024
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(args.dim, 64)).astype(np.float32))[0].T  # 64 planted directions
    scales = np.concatenate([[20.0], np.linspace(8, 2, 63)]).astype(np.float32)  # planted 0 stands out
    X = (rng.normal(size=(args.n, 64)).astype(np.float32) * scales) @ basis
    X += rng.normal(size=X.shape).astype(np.float32)
    rows = {}
    for method in ("randomized", "lowrank") + (("incremental",) if args.incremental or args.quick else ()):
        began = time.perf_counter()
        pca = ll.PCADirections(args.components, method=method, batch_size=max(args.components * 4, 2000)).fit(X)
        seconds = time.perf_counter() - began
        rows[method] = {"seconds": round(seconds, 2),
                        "top_component_cosine_to_planted": round(abs(float(pca.components_[0] @ basis[0])), 4),
                        "explained_variance_ratio_top": round(float(pca.explained_variance_ratio_[0]), 4)}
        print(f"{method:12} {seconds:7.2f} s   |cos(pc0, planted0)| = {rows[method]['top_component_cosine_to_planted']}")
    umap_rows = {}
    coords = X @ basis.T  # (n, 64): the planted coordinates plus noise
    for label, data in (("cold_64", coords), ("warm_64", coords), ("warm_full", X)):
        began = time.perf_counter()
        ll.UMAPMap(random_state=0).fit(data)
        seconds = time.perf_counter() - began
        umap_rows[label] = {"seconds": round(seconds, 2), "shape": list(data.shape)}
        print(f"umap {label:9} {seconds:7.2f} s   ({data.shape[0]} x {data.shape[1]})")
    collect_rows = {} if args.quick else _collection(args.collect_n)
    report = {"benchmark": "directions", "shape": [args.n, args.dim], "components": args.components,
              "threads": torch.get_num_threads(), "bar_seconds": 5.0, "pca": rows,
              "umap": umap_rows, "umap_bar_seconds": 30.0, "collect": collect_rows,
              **environment()}
    write_report(args.out, report)
    return report


def _collection(n: int) -> dict:
    """Samples per second of latentlib.collect on the default model, per space (20 steps, guidance 5; no cache)."""
    model = ll.load()
    prompts = ["a red circle", "a blue star on a white background", "a small green square in the top left"]
    rows = {}
    for space in ("xT", "prompt", "h", "z0"):
        began = time.perf_counter()
        ll.collect(model, space, prompts=[prompts[i % 3] for i in range(n)], seeds=n, cache=False, progress=False)
        seconds = time.perf_counter() - began
        rows[space] = {"samples": n, "seconds": round(seconds, 2), "per_second": round(n / seconds, 1)}
        print(f"collect {space:7} {n / seconds:8.1f} samples/s")
    return rows


if __name__ == "__main__":
    main()
