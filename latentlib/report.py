"""The report card: what a direction does, measured, not eyeballed.

``report_card(model, direction, probe, strengths, seeds, prompts)`` generates every (seed, prompt) at every
strength, reads each image with the probe and scores:

for the **target** attribute (a continuous reading such as ``"x"``, a class probability such as
``"color=blue"``, or an angle, unwrapped along the strengths when ``circular`` gives its period)
    - ``effect_per_unit``: the median over seeds of the least-squares slope of the reading against strength;
    - ``spearman_median`` and ``monotone_share``: Spearman's rho of reading vs strength per seed, its median,
      and the share of seeds whose rho is >= ``monotone_at`` (0.9) in the expected sign;
    - ``linearity_r2``: the median per-seed R^2 of the straight-line fit;
    - ``saturation``: 1 - (slope over the outer strengths) / (slope over the inner ones), median over seeds:
      0 for a straight line, towards 1 when the effect flattens out at large strengths, negative when it
      speeds up;
    - ``sign_share``: the share of seeds where the reading moved the expected way from the lowest strength
      to the highest;

for **every other attribute** the probe reads (leakage)
    - continuous ones: the same slope and median |rho|;
    - categorical ones (shape, colour, background, present): ``changed_share``, the share of edited images
      (strength != 0) whose class differs from the unedited image's;

and **preservation** of the rest of the image
    - ``latent_change``: the edited final latents' distance from the unedited ones, relative to the
      unedited latents' norm, per unit of |strength|;
    - ``pixel_change_outside``: the mean absolute pixel change (0-1 scale) outside the region the attribute
      lives in, where a ``region`` function says where that is. The default, ``"auto"``, is for scenes of
      one object on a plain background (the default model's world): the region is every pixel that differs
      from the image's border colour in the edited or the unedited image.

The result holds the tables (pandas), the per-image readings, a matplotlib figure, and writes CSV,
Markdown and PNG/PDF/SVG.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = ["ReportCard", "border_region", "follow_object", "follow_shift", "report_card"]

CATEGORICAL = ("shape", "color", "background", "present")


def border_region(images: torch.Tensor, *, threshold: float = 0.15) -> torch.Tensor:
    """Pixels that differ from the image's border colour (per image, median of the 1-pixel border) by more
    than ``threshold`` in any channel: the object, for a scene of one object on a plain background.

    ``images``: (B, 3, H, W) in [0, 1]. Returns a bool mask (B, H, W).
    """
    from .probes import border_contrast

    return border_contrast(images) > threshold


def follow_object(probe, *, centre: tuple[float, float], cells):
    """A ``follow`` function for :func:`report_card`: the probe's ``x`` and ``y`` of an image, as whole cells of
    the sample's grid from ``centre`` (the ``(x, y)`` where the direction's samples had their objects, e.g.
    their median; 0-1 of the image's width and height), returned as ``(dy, dx)``. ``cells`` is the grid's
    side, or ``(rows, columns)``."""
    if not callable(probe):
        raise TypeError(f"`probe` must be callable (images -> readings), got {type(probe).__name__}.")
    grid = tuple(cells) if isinstance(cells, (tuple, list)) else (cells, cells)
    if len(grid) != 2 or any(isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 1 for c in grid):
        raise ValueError(f"`cells` must be a whole number >= 1 (the grid's side) or (rows, columns), got {cells!r}.")
    try:
        cx, cy = (float(v) for v in centre)
    except (TypeError, ValueError):
        raise ValueError(f"`centre` must be (x, y), two numbers, got {centre!r}.") from None
    if not (0 <= cx <= 1 and 0 <= cy <= 1):
        raise ValueError(f"`centre` must be (x, y) within 0..1 (fractions of the image's width and height), "
                         f"got {centre!r}.")
    rows, columns = grid

    def follow(image: torch.Tensor) -> tuple[int, int]:
        readings = probe(image[None])
        return round((float(readings["y"][0]) - cy) * rows), round((float(readings["x"][0]) - cx) * columns)

    return follow


def follow_shift(follow, image: torch.Tensor, seed) -> tuple[int, int]:
    """``follow(image)`` checked: ``(dy, dx)``, two whole numbers of cells (``seed`` names the image in the
    error)."""
    shift = follow(image)
    if not (isinstance(shift, (tuple, list)) and len(shift) == 2
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in shift)):
        raise ValueError(f"`follow` must return (dy, dx), two whole numbers of cells; got {shift!r} for seed {seed}.")
    return int(shift[0]), int(shift[1])


def _spearman(strengths: np.ndarray, readings: np.ndarray) -> float:
    """Spearman's rho; 0 for a reading that does not change at all (scipy would give NaN)."""
    from scipy.stats import spearmanr

    if np.ptp(readings) == 0:
        return 0.0
    return float(spearmanr(strengths, readings).statistic)


def _unwrap_rows(values: np.ndarray, period: float, zero: int) -> np.ndarray:
    """Each row unwrapped along its columns (the strengths), then shifted by whole periods to agree with its
    own reading at column ``zero`` (or, where that is NaN, at the finite reading nearest to it). NaN readings
    stay NaN and are stepped over: the readings on either side of one are unwrapped against each other."""
    out = np.array(values, dtype=np.float64)
    for row in out:
        finite = np.flatnonzero(np.isfinite(row))
        if finite.size == 0:
            continue
        unwrapped = np.unwrap(row[finite], period=period)
        anchor = int(np.argmin(np.abs(finite - zero)))
        row[finite] = unwrapped + (row[finite[anchor]] - unwrapped[anchor])
    return out


def _line(strengths: np.ndarray, readings: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and R^2."""
    slope, intercept = np.polyfit(strengths, readings, 1)
    residual = readings - (slope * strengths + intercept)
    total = float(((readings - readings.mean()) ** 2).sum())
    r2 = 1.0 - float((residual**2).sum()) / total if total > 0 else 0.0
    return float(slope), r2


def _saturation(strengths: np.ndarray, readings: np.ndarray) -> float:
    """1 - outer slope / inner slope (inner: |s| <= half the largest |s|)."""
    half = np.abs(strengths).max() / 2
    inner = np.abs(strengths) <= half
    if inner.sum() < 2 or (~inner).sum() < 1:
        return float("nan")
    lo, hi = strengths.argmin(), strengths.argmax()
    inner_s = strengths[inner]
    i_lo, i_hi = np.flatnonzero(inner)[inner_s.argmin()], np.flatnonzero(inner)[inner_s.argmax()]
    inner_slope = (readings[i_hi] - readings[i_lo]) / (strengths[i_hi] - strengths[i_lo])
    outer_span = (strengths[hi] - strengths[i_hi]) + (strengths[i_lo] - strengths[lo])
    if outer_span == 0 or inner_slope == 0:
        return float("nan")
    outer_slope = ((readings[hi] - readings[i_hi]) + (readings[i_lo] - readings[lo])) / outer_span
    return float(1.0 - outer_slope / inner_slope)


@dataclass
class ReportCard:
    """What :func:`report_card` measured. ``summary`` (one row per attribute, target first), ``readings``
    (one row per image: seed, prompt, strength and every reading), ``per_seed`` (the target's scores per
    (seed, prompt)), ``images`` ((S, K, 3, H, W) for S (seed, prompt) pairs and K strengths, in [0, 1])."""

    direction: str
    target: str
    expected_sign: int
    strengths: list[float]
    summary: object  # pandas.DataFrame
    readings: object
    per_seed: object
    images: torch.Tensor
    settings: dict = field(default_factory=dict)

    @property
    def target_row(self) -> dict:
        return self.summary.iloc[0].to_dict()

    def to_markdown(self) -> str:
        t = self.target_row
        lines = [f"# Report card: {self.direction}", "",
                 f"Target **{self.target}** (expected sign {'+' if self.expected_sign > 0 else '-'}), strengths "
                 f"{self.strengths}, {len(self.per_seed)} seed/prompt pairs.", "",
                 f"- effect per unit strength: {t['effect_per_unit']:.4g}",
                 f"- monotone (rho >= {self.settings.get('monotone_at', 0.9)} in the expected sign) on "
                 f"{100 * t['monotone_share']:.1f}% of seeds; median rho {t['spearman_median']:.3f}",
                 f"- linearity (median R^2): {t['linearity_r2']:.3f}; saturation: {t['saturation']:.3f}",
                 f"- expected sign on {100 * t['sign_share']:.1f}% of seeds",
                 f"- latent change per unit |strength|: {t['latent_change']:.4g}; pixel change outside the region: "
                 f"{t['pixel_change_outside']:.4g}", "", "## Every attribute", ""]
        table = self.summary.copy()
        header = "| " + " | ".join(["attribute", *table.columns]) + " |"
        lines += [header, "|" + "---|" * (len(table.columns) + 1)]
        for name, row in table.iterrows():
            cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.tolist()]
            lines.append("| " + " | ".join([str(name), *cells]) + " |")
        lines += ["", "Settings: `" + json.dumps(self.settings, default=str) + "`", ""]
        return "\n".join(lines)

    def figure(self, *, examples: int = 2):
        """A matplotlib figure: the target per seed against strength, leakage per attribute, the spread of
        per-seed rho, and ``examples`` rows of images across the strengths."""
        from matplotlib.figure import Figure  # not pyplot: no global figure state, nothing to close

        k = len(self.strengths)
        examples = max(0, min(examples, self.images.shape[0]))
        fig = Figure(figsize=(max(10, 1.1 * k), 6.5 + 1.2 * examples), layout="constrained")
        grid = fig.add_gridspec(2 + examples, 3, height_ratios=[3, 0.2] + [1] * examples)
        ax = fig.add_subplot(grid[0, 0])
        r = self.readings
        for _, group in r.groupby(["seed", "prompt"], sort=False):
            ax.plot(group["strength"], group["target"], color="0.6", lw=0.8, alpha=0.6)
        median = r.groupby("strength")["target"].median()
        ax.plot(median.index, median.values, color="C0", lw=2.5, label="median")
        unit = f"{self.settings['degrees']:g} degrees round the ring" if self.settings.get("degrees") else \
            "standard deviations"
        ax.set(xlabel=f"strength ({unit})", ylabel=self.target + (" (unwrapped)" if self.settings.get("circular") else ""),
               title=f"{self.target} per seed")
        ax.legend(loc="best")
        ax = fig.add_subplot(grid[0, 1])
        others = self.summary.iloc[1:]
        values = [row["changed_share"] if name.split("=")[0] in CATEGORICAL else abs(row["spearman_median"])
                  for name, row in others.iterrows()]
        colours = ["C3" if name.split("=")[0] in CATEGORICAL else "C1" for name in others.index]
        ax.barh(list(others.index), values, color=colours)
        ax.set(xlim=(0, 1), title="leakage", xlabel="changed share (red) / median |rho| (orange)")
        ax.invert_yaxis()
        ax = fig.add_subplot(grid[0, 2])
        rho = self.per_seed["spearman"].to_numpy() * self.expected_sign
        ax.hist(rho[np.isfinite(rho)], bins=np.linspace(-1, 1, 21), color="C0")
        ax.axvline(self.settings.get("monotone_at", 0.9), color="k", ls="--", lw=1)
        ax.set(xlabel="rho x expected sign", ylabel="seeds",
               title=f"monotone on {100 * self.target_row['monotone_share']:.0f}% of seeds")
        for row in range(examples):
            strip = torch.cat(list(self.images[row]), dim=-1).permute(1, 2, 0).clamp(0, 1).numpy()
            a = fig.add_subplot(grid[2 + row, :])
            a.imshow(strip)
            a.set_xticks([(i + 0.5) * self.images.shape[-1] for i in range(k)], [f"{s:+g}" for s in self.strengths])
            a.set_yticks([])
            seed, prompt = self.per_seed.iloc[row]["seed"], self.per_seed.iloc[row]["prompt"]
            a.set_ylabel(f"seed {seed}", rotation=0, ha="right", va="center")
            a.set_title(repr(prompt), fontsize=9)
        fig.suptitle(f"Report card: {self.direction} -> {self.target}")
        return fig

    def save(self, folder, *, overwrite: bool = False, figure_format: str = "png") -> dict[str, Path]:
        """Write ``summary.csv``, ``readings.csv``, ``per_seed.csv``, ``report.md`` and ``report.<format>``
        into ``folder``; existing files are kept unless ``overwrite``."""
        if figure_format not in ("png", "pdf", "svg"):
            raise ValueError(f"`figure_format` must be 'png', 'pdf' or 'svg', got {figure_format!r}.")
        folder = Path(folder)
        paths = {"summary": folder / "summary.csv", "readings": folder / "readings.csv",
                 "per_seed": folder / "per_seed.csv", "markdown": folder / "report.md",
                 "figure": folder / f"report.{figure_format}"}
        existing = [str(p) for p in paths.values() if p.exists()]
        if existing and not overwrite:
            raise FileExistsError(f"{', '.join(existing)} already exist; pass overwrite=True (--overwrite) to replace them.")
        folder.mkdir(parents=True, exist_ok=True)
        self.summary.to_csv(paths["summary"], index_label="attribute")
        self.readings.to_csv(paths["readings"], index=False)
        self.per_seed.to_csv(paths["per_seed"], index=False)
        paths["markdown"].write_text(self.to_markdown())
        fig = self.figure()
        fig.savefig(paths["figure"], dpi=110)
        return paths


def _pairs(seeds, prompts) -> list[tuple[int, str]]:
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"`seeds` must be a count >= 1 or a list of ints, got {seeds!r}.")
        seeds = list(range(int(seeds)))
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"`seeds` must be a count >= 1 or a non-empty list of ints, got {seeds!r}.")
    if prompts is None or isinstance(prompts, str):
        prompts = [prompts or ""] * len(seeds)
    prompts = list(prompts)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"`prompts` must be a prompt or a non-empty list of prompts, got {prompts!r}.")
    return [(int(s), prompts[i % len(prompts)]) for i, s in enumerate(seeds)]


def _target_values(readings: dict, target: str) -> np.ndarray:
    if "=" in target:
        name, cls = target.split("=", 1)
        labels = readings.get(f"{name}_classes")
        if labels is None or cls not in labels:
            raise ValueError(f"`target` {target!r}: the probe has no class {cls!r} for {name!r}"
                             + (f"; classes are {', '.join(labels)}." if labels is not None else "."))
        return np.asarray(readings[f"{name}_prob"])[:, list(labels).index(cls)]
    value = readings.get(target)
    if value is None or np.asarray(value).dtype == object:
        numeric = [k for k, v in readings.items() if not k.endswith(("_prob", "_classes")) and np.asarray(v).dtype != object
                   and np.asarray(v).dtype != bool]
        raise ValueError(f"`target` {target!r} is not a continuous probe reading; use one of {', '.join(numeric)}, "
                         f"or a class probability such as 'color=blue'.")
    return np.asarray(value, dtype=np.float64)


@torch.no_grad()
def report_card(model, direction, probe, *, target: str | None = None, strengths=(-3, -2, -1, 0, 1, 2, 3),
                seeds=8, prompts=None, expected_sign: int = 1, monotone_at: float = 0.9, region="auto",
                steps: int = 20, guidance: float = 5.0, image_strength: float = 0.6, circular: float | None = None,
                follow=None, progress: bool = True, **generate_kwargs) -> ReportCard:
    """Score ``direction`` on ``model`` with ``probe`` (see the module docstring for every measure).

    Args:
        direction: a :class:`~latentlib.directions.Direction` (or anything ``generate``'s edits take).
        probe: images -> dict of readings (e.g. :func:`latentlib.probes.load_probe`); may expose class
            names as ``<name>_classes`` for targets such as ``"color=blue"``. A NaN reading (nothing to
            read: :class:`latentlib.probes.RotationMeter` on an image whose object is gone) makes that seed's
            scores NaN: it counts as neither monotone nor of the expected sign and is left out of the medians.
            For rotation, :class:`~latentlib.probes.RotationMeter` reads the angle from the pixels, about five
            times as precisely as the probe's rotation head.
        target: the reading the direction should move (default: the direction's name, when the probe reads it).
        strengths: in standard deviations of the samples along the direction; must include 0 (the card
            lists them in increasing order).
        seeds: a count or a list of ints; prompts: one prompt, or a list cycled over the seeds.
        expected_sign: +1 if positive strengths should raise the target, -1 if they should lower it.
        region: "auto" (:func:`border_region`), a function images (B, 3, H, W) -> bool (B, H, W), or None.
        image_strength: for z0 directions, how far each unedited image is re-noised (SDEdit) after the edit.
        circular: for a target that is an angle, its period (``2 * math.pi`` for radians, 360 for degrees).
            Each seed's readings are then unwrapped along the strengths (``numpy.unwrap``, anchored at
            strength 0) before they are scored, so a :class:`~latentlib.directions.Turn` that carries the
            angle past its wrap point reads as the steady change it is. Neighbouring strengths must move the
            angle by less than half a period for the unwrapping to be right.
        follow: None, or a function that takes a seed's unedited image ``(3, H, W)`` in [0, 1] and returns
            ``(dy, dx)``, whole cells of the sample's grid (e.g. :func:`follow_object`); each seed's sweep then
            uses ``direction.rolled(dy, dx)`` (a :class:`~latentlib.directions.Turn` fitted on objects in one
            place, moved to where this seed's object is). ``per_seed`` records each seed's ``dy`` and ``dx``.
        generate_kwargs: more settings for ``model.generate`` (scheduler, ...).
    """
    strengths = [float(s) for s in strengths]
    if len(strengths) < 3 or 0.0 not in strengths or len(set(strengths)) != len(strengths):
        raise ValueError(f"`strengths` must hold at least 3 distinct values including 0, got {strengths}.")
    order = np.argsort(strengths)
    strengths = [strengths[i] for i in order]
    if expected_sign not in (1, -1):
        raise ValueError(f"`expected_sign` must be 1 or -1, got {expected_sign!r}.")
    if not (isinstance(region, str) and region == "auto") and region is not None and not callable(region):
        raise ValueError(f"`region` must be 'auto', a function images -> mask, or None; got {region!r}.")
    if not callable(probe):
        raise TypeError(f"`probe` must be callable (images -> readings), got {type(probe).__name__}.")
    if circular is not None and (isinstance(circular, bool) or not isinstance(circular, numbers.Real)
                                 or not np.isfinite(circular) or circular <= 0):
        raise ValueError(f"`circular` must be None or the target's period, a finite number > 0 (2 * pi for an angle "
                         f"in radians); got {circular!r}.")
    if follow is not None:
        if not callable(follow):
            raise TypeError(f"`follow` must be None or a function image -> (dy, dx); got {type(follow).__name__}.")
        if not getattr(direction, "rollable", False):
            raise TypeError(f"`follow` rolls the direction per seed, which needs a `rolled(dy, dx)` method (a Turn "
                            f"in xT, z0 or h); got a {type(direction).__name__} in {getattr(direction, 'space', None)}.")
    target = target or getattr(direction, "name", "")
    space = getattr(direction, "space", None)
    pairs = _pairs(seeds, prompts)
    zero = strengths.index(0.0)
    arr = np.asarray(strengths)
    kw = {"steps": steps, "guidance": guidance, "progress": False, **generate_kwargs}

    all_latents, all_images, shifts = [], [], []
    for seed, prompt in tqdm(pairs, desc=f"report card {getattr(direction, 'name', '')}", disable=not progress):
        start = model.generate(prompt, seed=seed, output="pt", **kw) if space == "z0" or follow is not None else None
        moved = direction
        if follow is not None:
            shifts.append(follow_shift(follow, start[0].float().cpu(), seed))
            moved = direction.rolled(*shifts[-1])
        if space == "z0":
            latents = model.sweep(prompt, moved, strengths, seed=seed, image=start, strength=image_strength,
                                  output="latent", **kw)
        else:
            latents = model.sweep(prompt, moved, strengths, seed=seed, output="latent", **kw)
        all_latents.append(latents.float().cpu())
        all_images.append(model.decode(latents, output="pt").float().cpu())
    images = torch.stack(all_images)  # (S, K, 3, H, W)
    latents = torch.stack(all_latents)
    flat_images = images.reshape(-1, *images.shape[2:])
    readings = probe(flat_images)
    classes = {k[: -len("_classes")]: v for k, v in readings.items() if k.endswith("_classes")}
    if not classes and hasattr(probe, "classes"):
        classes = dict(probe.classes)
    readings = {**readings, **{f"{k}_classes": v for k, v in classes.items()}}
    target_values = _target_values(readings, target).reshape(len(pairs), len(strengths))
    if circular is not None:
        target_values = _unwrap_rows(target_values, float(circular), zero)

    import pandas as pd

    S, K = len(pairs), len(strengths)
    rows = []
    plain = {k: np.asarray(v) for k, v in readings.items()
             if not k.endswith(("_prob", "_classes")) and np.asarray(v).shape[:1] == (S * K,)}
    for i, (seed, prompt) in enumerate(pairs):
        for j, s in enumerate(strengths):
            row = {"seed": seed, "prompt": prompt, "strength": s, "target": float(target_values[i, j])}
            row.update({k: (v[i * K + j].item() if hasattr(v[i * K + j], "item") else v[i * K + j]) for k, v in plain.items()})
            rows.append(row)
    table = pd.DataFrame(rows)

    # preservation
    base_lat = latents[:, zero : zero + 1]
    lat_change = ((latents - base_lat).flatten(2).norm(dim=-1) / base_lat.flatten(2).norm(dim=-1).clamp(min=1e-8))
    moved = arr != 0
    latent_change = float((lat_change[:, moved] / torch.from_numpy(np.abs(arr[moved])).float()).mean())
    pixel_outside = float("nan")
    if region is not None:
        fn = border_region if region == "auto" else region
        base = images[:, zero : zero + 1].expand_as(images)
        mask = fn(flat_images) | fn(base.reshape_as(flat_images))
        outside = (~mask).unsqueeze(1).float()
        change = ((flat_images - base.reshape_as(flat_images)).abs() * outside).sum(dim=(1, 2, 3))
        denom = (outside.sum(dim=(1, 2, 3)) * 3).clamp(min=1)
        per = (change / denom).reshape(S, K)
        pixel_outside = float(per[:, moved].mean())

    def median(xs) -> float:
        xs = np.asarray(xs, dtype=np.float64)
        return float(np.nanmedian(xs)) if np.isfinite(xs).any() else float("nan")

    def continuous(values: np.ndarray) -> dict:
        # a seed with a reading the probe could not make (NaN: no object, a circle's angle) gets NaN scores,
        # which count as neither monotone nor of the expected sign, and are left out of the medians
        nan = float("nan")
        stats = [(_line(arr, v), _spearman(arr, v), _saturation(arr, v)) if np.isfinite(v).all()
                 else ((nan, nan), nan, nan) for v in values]
        return {"effect_per_unit": median([s[0][0] for s in stats]),
                "spearman_median": median([s[1] for s in stats]),
                "monotone_share": float(np.mean([s[1] * expected_sign >= monotone_at for s in stats])),
                "linearity_r2": median([s[0][1] for s in stats]),
                "saturation": median([s[2] for s in stats]),
                "sign_share": float(np.mean((values[:, -1] - values[:, 0]) * expected_sign > 0)),
                "changed_share": nan}, stats

    target_stats, stats = continuous(target_values)
    summary = {target: {**target_stats, "latent_change": latent_change, "pixel_change_outside": pixel_outside}}
    for name, values in plain.items():
        if name == target:
            continue
        values = values.reshape(S, K)
        if name in CATEGORICAL or values.dtype == object or values.dtype == bool:
            same = values == values[:, zero : zero + 1]
            changed = float(1.0 - same[:, moved].mean())
            summary[name] = {"changed_share": changed}
        else:
            summary[name] = continuous(values.astype(np.float64))[0]
    summary_df = pd.DataFrame.from_dict(summary, orient="index")
    cols = ["effect_per_unit", "spearman_median", "monotone_share", "linearity_r2", "saturation", "sign_share",
            "changed_share", "latent_change", "pixel_change_outside"]
    summary_df = summary_df.reindex(columns=cols)
    per_seed = pd.DataFrame([{"seed": seed, "prompt": prompt, "spearman": st[1], "slope": st[0][0], "r2": st[0][1],
                              "saturation": st[2]} for (seed, prompt), st in zip(pairs, stats, strict=True)])
    if follow is not None:
        per_seed["dy"], per_seed["dx"] = [d for d, _ in shifts], [d for _, d in shifts]
    settings = {"space": space, "steps": steps, "guidance": guidance, "monotone_at": monotone_at, "circular": circular,
                "degrees": getattr(direction, "degrees", None),  # a turn: strength 1 is this many degrees
                "follow": follow is not None,  # the direction rolled per seed to its object (per_seed: dy, dx)
                "region": "auto" if isinstance(region, str) else (None if region is None else getattr(region, "__name__", "custom")),
                "image_strength": image_strength if space == "z0" else None,
                "h_layer": getattr(direction, "layer", None) if space == "h" else None,
                "provenance": getattr(direction, "provenance", {}),
                **{k: v for k, v in generate_kwargs.items() if isinstance(v, (str, int, float, bool, type(None)))}}
    return ReportCard(direction=getattr(direction, "name", "") or "direction", target=target,
                      expected_sign=expected_sign, strengths=strengths, summary=summary_df, readings=table,
                      per_seed=per_seed, images=images, settings=settings)
