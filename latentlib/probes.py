"""Probes: functions images -> attribute values.

:class:`ShapesProbe` reads the shapes world's factors back from pixels: shape, object colour,
background, whether an object is present, size, x, y, and rotation modulo the shape's symmetry.
It is a small CNN trained on the generator's ground truth (``python -m latentlib.train_shapes probe``);
its weights ship with latentlib, so ``load_probe()`` works offline. The report card and inpainting
work use it to *measure* what an edit did.

Example:
    >>> probe = latentlib.probes.load_probe()
    >>> probe(images)["color"]          # array of colour names, one per image
"""

from __future__ import annotations

import functools
import json
import math
import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import shapes
from .codec import to_pixels

__all__ = ["PROBE_DIR", "ColourMeter", "Probe", "RotationMeter", "ShapesProbe", "border_contrast", "colour_axis",
           "evaluate_probe", "load_probe", "probe_loss", "probe_targets", "rotation_meter"]

#: Where the shipped probe lives (package data).
PROBE_DIR = Path(__file__).parent / "weights" / "shapes-probe"

_HEADS = (("shape", len(shapes.SHAPES)), ("color", len(shapes.COLORS)), ("background", len(shapes.BACKGROUNDS)),
          ("present", 1), ("size", 1), ("x", 1), ("y", 1), ("rotation", 2))
_SHAPES, _COLORS, _BACKGROUNDS = list(shapes.SHAPES), list(shapes.COLORS), list(shapes.BACKGROUNDS)
#: Regression heads predict (value - centre) / scale, so every loss term starts near 1.
_REGRESSION = {"size": (0.21, 0.05), "x": (0.5, 0.2), "y": (0.5, 0.2)}
_ORDERS = torch.tensor([shapes.SYMMETRY[s] for s in shapes.SHAPES], dtype=torch.float32)


def _block(cin: int, cout: int) -> nn.Sequential:
    # No normalisation layers: GroupNorm/InstanceNorm remove each image's mean colour, which is exactly
    # what the background and colour heads must read.
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1, stride=2), nn.SiLU(),
    )


class ShapesProbe(nn.Module):
    """CNN: pixels ``(B, 3, 64, 64)`` in [0, 1] -> raw factor outputs (logits and regressions).

    Two coordinate channels are appended to the input (CoordConv), so positions are easy to read.
    Wrap a trained one in :class:`Probe` (as :func:`load_probe` does) to get named estimates.
    """

    def __init__(self, *, widths: tuple[int, ...] = (16, 32, 64, 96), hidden: int = 192, image_size: int = 64):
        super().__init__()
        self.config = {"widths": list(widths), "hidden": hidden, "image_size": image_size}
        layers, cin = [], 5
        for width in widths:
            layers.append(_block(cin, width))
            cin = width
        self.features = nn.Sequential(*layers)
        cells = (image_size // 2 ** len(widths)) ** 2
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(cin * cells, hidden), nn.SiLU(),
                                  nn.Linear(hidden, sum(n for _, n in _HEADS)))

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs (logits and regressions) for ``pixels`` (B, 3, H, W) in [0, 1]."""
        b, _, h, w = pixels.shape
        ys = torch.linspace(-1, 1, h, device=pixels.device, dtype=pixels.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=pixels.device, dtype=pixels.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        out = self.head(self.features(torch.cat([pixels * 2 - 1, xs, ys], dim=1)))
        parts, start = {}, 0
        for name, n in _HEADS:
            parts[name] = out[:, start : start + n]
            start += n
        return parts



class Probe:
    """A trained :class:`ShapesProbe` as a function: images -> dict of factor estimates (numpy arrays).

    Keys: ``shape``, ``color``, ``background`` (names; shape/colour are None where no object is seen),
    ``present`` (bool), ``size``, ``x``, ``y`` (as in the labels), ``rotation`` (radians in
    [0, 2 pi / symmetry); 0 for circles), and ``*_prob`` class probabilities, whose column order
    ``classes`` gives (``{"shape": [...], "color": [...], "background": [...]}``).
    """

    classes = {"shape": tuple(_SHAPES), "color": tuple(_COLORS), "background": tuple(_BACKGROUNDS)}

    def __init__(self, net: ShapesProbe):
        self.net = net.eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, images, *, batch_size: int = 256) -> dict[str, np.ndarray]:
        pixels = to_pixels(images, multiple=1, name="images")
        size = self.net.config["image_size"]
        if pixels.shape[-2:] != (size, size):
            raise ValueError(f"`images` are {pixels.shape[-1]}x{pixels.shape[-2]}; this probe reads {size}x{size}.")
        device = next(self.net.parameters()).device
        chunks = [self.net(pixels[i : i + batch_size].to(device)) for i in range(0, pixels.shape[0], batch_size)]
        return decode_outputs({k: torch.cat([c[k] for c in chunks]).float().cpu() for k in chunks[0]})


def decode_outputs(raw: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Raw probe outputs -> named factor estimates."""
    present = torch.sigmoid(raw["present"][:, 0]) > 0.5
    out = {}
    for name, names in (("shape", _SHAPES), ("color", _COLORS), ("background", _BACKGROUNDS)):
        prob = torch.softmax(raw[name], dim=1)
        labels = np.array(names, dtype=object)[prob.argmax(1).numpy()]
        if name != "background":
            labels = np.where(present.numpy(), labels, None)
        out[name], out[f"{name}_prob"] = labels, prob.numpy()
    out["present"] = present.numpy()
    out["present_prob"] = torch.sigmoid(raw["present"][:, 0]).numpy()
    for name, (centre, scale) in _REGRESSION.items():
        out[name] = (centre + scale * raw[name][:, 0]).numpy()
    shape_index = torch.softmax(raw["shape"], 1).argmax(1)
    order = _ORDERS[shape_index]
    angle = torch.atan2(raw["rotation"][:, 1], raw["rotation"][:, 0])  # = order * rotation (mod 2 pi)
    rotation = torch.where(order > 0, torch.remainder(angle, 2 * math.pi) / order.clamp(min=1), torch.zeros_like(angle))
    out["rotation"] = rotation.numpy()
    return out


def probe_targets(labels: list[dict]) -> dict[str, torch.Tensor]:
    """Label dicts (from ``shapes.make_dataset``) -> training targets for :class:`ShapesProbe`."""
    present = torch.tensor([lab["present"] for lab in labels])
    shape = torch.tensor([_SHAPES.index(lab["shape"]) if lab["present"] else 0 for lab in labels])
    order = _ORDERS[shape] * present
    rotation = torch.tensor([lab["rotation"] for lab in labels], dtype=torch.float32) * order
    return {
        "present": present,
        "shape": shape,
        "color": torch.tensor([_COLORS.index(lab["color"]) if lab["present"] else 0 for lab in labels]),
        "background": torch.tensor([_BACKGROUNDS.index(lab["background"]) for lab in labels]),
        "size": torch.tensor([lab["size"] for lab in labels], dtype=torch.float32),
        "x": torch.tensor([lab["x"] for lab in labels], dtype=torch.float32),
        "y": torch.tensor([lab["y"] for lab in labels], dtype=torch.float32),
        "rotation": torch.stack([torch.cos(rotation), torch.sin(rotation)], dim=1),
        "has_rotation": order > 0,
    }


def probe_loss(raw: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Sum of per-factor losses and the detached parts; object factors only count where an object is present."""
    ce = nn.functional.cross_entropy
    present = target["present"]
    parts = {"present": nn.functional.binary_cross_entropy_with_logits(raw["present"][:, 0], present.float()),
             "background": ce(raw["background"], target["background"])}
    if present.any():
        for name in ("shape", "color"):
            parts[name] = ce(raw[name][present], target[name][present])
        for name, (centre, scale) in _REGRESSION.items():  # in normalised units: starts near 1, like the others
            parts[name] = ((raw[name][present, 0] - (target[name][present] - centre) / scale) ** 2).mean()
    rotating = target["has_rotation"]
    if rotating.any():
        parts["rotation"] = ((raw["rotation"][rotating] - target["rotation"][rotating]) ** 2).sum(1).mean()
    total = sum(parts.values())
    return total, {k: v.detach() for k, v in parts.items()}  # tensors: read them when needed (a GPU waits)


def load_probe(path: str | Path | None = None, *, device="cpu") -> Probe:
    """Load a probe folder (``config.json`` + ``probe.safetensors``); default: the one shipped with latentlib."""
    from safetensors.torch import load_file

    folder = Path(path) if path is not None else PROBE_DIR
    if not (folder / "probe.safetensors").is_file() or not (folder / "config.json").is_file():
        raise ValueError(
            f"{str(folder)!r} has no probe (config.json + probe.safetensors). Train one with "
            f"`python -m latentlib.train_shapes probe --out {folder}`."
        )
    config = json.loads((folder / "config.json").read_text())
    probe = ShapesProbe(widths=tuple(config["widths"]), hidden=config["hidden"], image_size=config["image_size"])
    probe.load_state_dict(load_file(folder / "probe.safetensors"))
    return Probe(probe.to(device))


@functools.cache
def _meter_offsets(threshold: float) -> dict[str, float]:
    """Per shape: the phase of the meter's moment (at ``threshold``) for the shape drawn at rotation 0, so that
    the meter reads symmetry order x the labels' rotation."""
    offsets = {}
    for name, order in shapes.SYMMETRY.items():
        if order:
            scene = shapes.Scene(name, "red", "black", 0.4, 0.5, 0.5, 0.0)
            pixels = torch.from_numpy(np.array(shapes.render(scene, 256))).permute(2, 0, 1)[None].float() / 255
            offsets[name] = float(_moment_phase(pixels, np.array([order]), threshold)[0])
    return offsets


def border_contrast(images: torch.Tensor) -> torch.Tensor:
    """Per pixel, its largest channel difference from the image's border colour (the median of the 1-pixel
    border): ``(B, 3, H, W)`` in [0, 1] -> ``(B, H, W)``. For a scene of one object on a plain background,
    the object is where this is large (:func:`latentlib.report.border_region`, :func:`rotation_meter`)."""
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], dim=-1)
    return (images - border.median(dim=-1).values[:, :, None, None]).abs().amax(dim=1)


def _moment_phase(pixels: torch.Tensor, orders: np.ndarray, threshold: float) -> np.ndarray:
    """arg of sum_p w_p (z_p - c)^order per image (z = x + i y, y down; c the weighted centroid). The object is
    the largest connected set of pixels whose contrast with the border colour exceeds ``threshold``, grown by
    2 pixels to take in its anti-aliased edge; w is a pixel's contrast as a fraction of the object's own
    (an edge pixel counts in part). Pixels away from the object count for nothing, which matters as the
    moment weighs them by r^order. NaN where nothing stands out from the border."""
    from scipy import ndimage

    b, _, h, w = pixels.shape
    contrast = border_contrast(pixels).double().numpy()
    out = np.full(b, np.nan)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    for i in range(b):
        labels, count = ndimage.label(contrast[i] > threshold, structure=np.ones((3, 3)))
        if count == 0 or orders[i] <= 0:
            continue
        largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
        blob = labels == largest
        region = ndimage.binary_dilation(blob, iterations=2)
        weight = np.where(region, np.clip(contrast[i] / np.median(contrast[i][blob]), 0, 1), 0.0)
        total = weight.sum()
        z = (xs - (weight * xs).sum() / total) + 1j * (ys - (weight * ys).sum() / total)
        out[i] = float(np.angle((weight * z ** int(orders[i])).sum()))
    return out


def _check_shapes(names) -> None:
    bad = sorted({repr(n) for n in names if n is not None and n not in shapes.SYMMETRY})
    if bad:
        raise ValueError(f"`shape` must be one of {', '.join(shapes.SYMMETRY)} or None; got {', '.join(bad)}.")


def _check_threshold(threshold) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 < threshold < 1:
        raise ValueError(f"`threshold` must be in (0, 1) (a colour difference, 0-1 per channel); got {threshold!r}.")


def rotation_meter(images, shape, *, threshold: float = 0.15) -> np.ndarray:
    """Symmetry order x the object's rotation, in radians in (-pi, pi], measured from the pixels.

    For a scene of one object on a plain background (the shapes world), the object is the largest connected
    set of pixels whose colour differs from the border's by more than ``threshold`` (0-1, any channel),
    grown by 2 pixels to take in its anti-aliased edge, and its orientation is the phase of its order-n
    complex moment (n the shape's rotational symmetry), calibrated per shape so that the reading equals
    n x the rotation the generator drew (mod 2 pi). On rendered scenes its error has a standard deviation
    of about 0.7-0.9 degrees of n x angle, against 4.5-5.6 for the probe's rotation head
    (tests/test_probes.py compares them on ground truth), so a report card on a turn reads the turn, not
    the probe's noise. A shape misread per image (``shape`` from a probe) changes the order or, between a
    square and a cross, the calibration, and so makes the reading jump.

    ``images``: what :func:`latentlib.codec.to_pixels` accepts (a float tensor (B, 3, H, W) in [0, 1]...).
    ``shape``: one shape name for every image (when the prompt fixes it, so that a misread shape cannot change
    the symmetry order), or one name (or None) per image, e.g. a probe's ``"shape"`` reading.
    Returns NaN for circles, None, and images where nothing stands out from the border.
    """
    pixels = to_pixels(images, multiple=1, name="images")
    if shape is None or isinstance(shape, str):
        names = [shape] * pixels.shape[0]
    elif isinstance(shape, (Sequence, np.ndarray)):
        names = list(shape)
        if len(names) != pixels.shape[0]:
            raise ValueError(f"`shape` has {len(names)} names for {pixels.shape[0]} images; give one per image or one "
                             f"for all.")
    else:
        raise TypeError(f"`shape` must be a shape name ({', '.join(shapes.SYMMETRY)}), None, or one of these per "
                        f"image; got {type(shape).__name__}.")
    _check_shapes(names)
    _check_threshold(threshold)
    orders = np.array([shapes.SYMMETRY[n] if n is not None else 0 for n in names])
    phase = _moment_phase(pixels, orders, threshold)
    offsets = _meter_offsets(float(threshold))
    offset = np.array([offsets.get(n, np.nan) if n is not None else np.nan for n in names])
    return np.angle(np.exp(1j * (phase - offset)))


class RotationMeter:
    """A probe plus ``rotation_angle``: :func:`rotation_meter`'s symmetry order x rotation (radians,
    (-pi, pi]; NaN for circles and empty scenes), for :func:`latentlib.report_card` with
    ``target="rotation_angle", circular=2 * math.pi``.

    ``shape``: the shape to measure every image as (e.g. ``"square"`` for a card whose prompt names it), or
    None to use the probe's own shape reading per image. Everything the probe reads is passed through,
    its own ``rotation`` head included.
    """

    def __init__(self, probe, shape: str | None = None, *, threshold: float = 0.15):
        if not callable(probe):
            raise TypeError(f"`probe` must be callable (images -> readings), got {type(probe).__name__}.")
        if shape is not None and not isinstance(shape, str):
            raise TypeError(f"`shape` must be a shape name ({', '.join(shapes.SYMMETRY)}) or None; got "
                            f"{type(shape).__name__}.")
        _check_shapes([shape])
        _check_threshold(threshold)
        self.probe, self.shape, self.threshold = probe, shape, threshold
        if hasattr(probe, "classes"):
            self.classes = probe.classes
        from .collect import _probe_id  # what made the readings, for collect's cache key

        self.name = f"RotationMeter({shape}, {threshold:g}):{_probe_id(probe)}"

    def __call__(self, images) -> dict[str, np.ndarray]:
        readings = dict(self.probe(images))
        if self.shape is None and "shape" not in readings:
            raise ValueError("RotationMeter(shape=None) measures each image as the shape its probe reads, but this "
                             f"probe gives no 'shape' reading (it gives {', '.join(sorted(readings))}); pass "
                             "`shape=` the shape the images show.")
        shape = self.shape if self.shape is not None else readings["shape"]
        readings["rotation_angle"] = rotation_meter(images, shape, threshold=self.threshold)
        return readings


def colour_axis(colour: str) -> np.ndarray:
    """The unit RGB axis (0-1 scale) from the mean of the other colour names' RGB to ``colour``'s."""
    if colour not in shapes.COLORS:
        raise ValueError(f"`colour` must be one of {', '.join(shapes.COLORS)}; got {colour!r}.")
    rgb = {name: np.asarray(value, dtype=np.float64) / 255 for name, value in shapes.COLORS.items()}
    axis = rgb[colour] - np.mean([v for name, v in rgb.items() if name != colour], axis=0)
    return axis / np.linalg.norm(axis)


class ColourMeter:
    """A probe plus ``toward_<colour>``: how far each image's object has gone toward a colour name, read from
    the pixels as the object's mean RGB (the pixels unlike the border colour, by more than ``threshold``:
    :func:`latentlib.report.border_region`) projected on :func:`colour_axis` (0-1 scale; NaN where no pixel
    differs from the border). A continuous reading for :func:`latentlib.report_card` with
    ``target=f"toward_{colour}"``: the probe's colour names snap between 8 values, this moves with every
    shade. Everything the probe reads is passed through.
    """

    def __init__(self, probe, colour: str, *, threshold: float = 0.15):
        if not callable(probe):
            raise TypeError(f"`probe` must be callable (images -> readings), got {type(probe).__name__}.")
        self.axis = colour_axis(colour)
        _check_threshold(threshold)
        self.probe, self.colour, self.threshold = probe, colour, threshold
        self.key = f"toward_{colour}"
        if hasattr(probe, "classes"):
            self.classes = probe.classes
        from .collect import _probe_id  # what made the readings, for collect's cache key

        self.name = f"ColourMeter({colour}, {threshold:g}):{_probe_id(probe)}"

    def __call__(self, images) -> dict[str, np.ndarray]:
        readings = dict(self.probe(images))
        pixels = to_pixels(images, multiple=1, name="images").float()
        mask = (border_contrast(pixels) > self.threshold).to(pixels.dtype)
        count = mask.sum(dim=(-2, -1))
        mean = (pixels * mask[:, None]).sum(dim=(-2, -1)) / count.clamp(min=1)[:, None]
        toward = mean.double().numpy() @ self.axis
        toward[count.numpy() == 0] = np.nan
        readings[self.key] = toward
        return readings


def _r2(pred: np.ndarray, true: np.ndarray) -> float:
    return float(1 - ((pred - true) ** 2).sum() / ((true - true.mean()) ** 2).sum())


def evaluate_probe(probe: Probe, *, n: int = 2000, split: str = "test", start: int = 0,
                   hue_spread: float = 0.0) -> dict:
    """Accuracy and R^2 of the probe on ``n`` fresh scenes of ``split`` (seeds ``start ..``), in the world of
    ``hue_spread`` (:func:`latentlib.shapes.sample_scene`)."""
    images, labels, _ = shapes.make_dataset(n, split, start=start, hue_spread=hue_spread)
    est = probe(images)
    present = np.array([lab["present"] for lab in labels])
    metrics = {"n": n, "split": split, "hue_spread": float(hue_spread), "present_accuracy": float((est["present"] == present).mean()),
               "background_accuracy": float((est["background"] == np.array([lab["background"] for lab in labels])).mean())}
    on = present & est["present"]
    for name in ("shape", "color"):
        metrics[f"{name}_accuracy"] = float((est[name][present] == np.array([lab[name] for lab in labels])[present]).mean())
    for name in ("size", "x", "y"):
        metrics[f"{name}_r2"] = _r2(est[name][on], np.array([lab[name] for lab in labels])[on])
    shape_true = np.array([lab["shape"] for lab in labels])
    orders = np.array([shapes.SYMMETRY.get(s, 0) if s else 0 for s in shape_true])
    rotating = on & (orders > 0) & (est["shape"] == shape_true)
    period = 2 * np.pi / np.maximum(orders[rotating], 1)
    diff = np.abs(est["rotation"][rotating] - np.array([lab["rotation"] for lab in labels])[rotating]) % period
    metrics["rotation_error_deg_median"] = (
        float(np.degrees(np.median(np.minimum(diff, period - diff)))) if rotating.any() else None
    )
    return metrics
