"""The "shapes" world: procedural 64x64 scenes whose generative factors are known.

Each scene is one object (or, in about 5% of scenes, none) on a plain background:

=================  ==========================================================================
shape              circle, square, triangle, star, cross
color              8 hues (red, orange, yellow, green, cyan, blue, purple, pink)
background         black, white, gray, beige (never an object colour)
size               circumradius as a fraction of the image side, in [0.12, 0.30]
x, y               centre, as fractions of the side (0 = left/top), keeping the object inside
rotation           radians in [0, 2 pi / symmetry) -- the one factor captions never mention
present            False for empty scenes
hue                the object's hue in degrees, when the world draws it (``hue_spread`` > 0); else None
=================  ==========================================================================

By default every object of one colour name has that name's exact RGB (``COLORS``). With ``hue_spread`` > 0
(``sample_scene``, ``make_dataset``) the hue is continuous: it is drawn uniformly from the name's own hue
out to ``hue_spread`` x half the way to each neighbouring name's hue (``hue_range``), keeping the name's
saturation and value; captions still use the colour name (as they use coarse words for size and position)
and the labels keep the exact hue. The draw has its own random stream, so every other factor of a seed is
the same at any spread, and ``hue_spread=0`` is the discrete world, pixel for pixel.

Everything is deterministic in ``(seed, split)``. Captions are drawn from the factors with varied
templates, word order and synonyms, sometimes leaving attributes out and sometimes empty (for
classifier-free guidance; only scenes with an object get the empty caption); size and position are
named by coarse words while the labels keep the exact values. Some (shape, colour) pairs never occur
in the ``train`` split: the ``heldout`` split holds exactly those, to measure compositional
generalisation.

Example:
    >>> from latentlib import shapes
    >>> scene = shapes.sample_scene(0)
    >>> image = shapes.render(scene)            # PIL 64x64 RGB
    >>> shapes.caption(scene, seed=0)
    'a small green square in the top right on a black background'
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import numbers
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw

__all__ = [
    "SHAPES",
    "COLORS",
    "HUES",
    "BACKGROUNDS",
    "SYMMETRY",
    "HELDOUT_PAIRS",
    "SPLITS",
    "Scene",
    "sample_scene",
    "hue_range",
    "render",
    "object_mask",
    "caption",
    "vocabulary",
    "size_word",
    "position_words",
    "make_dataset",
]

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLORS = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (40, 170, 60),
    "cyan": (30, 200, 210),
    "blue": (40, 70, 220),
    "purple": (140, 50, 190),
    "pink": (245, 130, 190),
}
BACKGROUNDS = {
    "black": (15, 15, 15),
    "white": (240, 240, 240),
    "gray": (120, 120, 120),
    "beige": (215, 200, 160),
}
#: Each colour name's HSV (hue in degrees, saturation and value in 0..1), from its RGB.
_HSV = {name: colorsys.rgb_to_hsv(*(v / 255 for v in rgb)) for name, rgb in COLORS.items()}
HUES = {name: 360.0 * hsv[0] for name, hsv in _HSV.items()}
#: Rotational symmetry order of each shape (rotation is only defined modulo 2 pi / order).
SYMMETRY = {"circle": 0, "square": 4, "triangle": 3, "star": 5, "cross": 4}
#: (shape, colour) pairs that never appear in the train split.
HELDOUT_PAIRS = (("circle", "purple"), ("square", "pink"), ("triangle", "orange"), ("star", "green"),
                 ("cross", "cyan"))
#: "all" draws every (shape, colour) pair: for instruments such as the probe, which must read any scene.
SPLITS = ("train", "val", "test", "heldout", "all")
SIZE_RANGE = (0.12, 0.30)
EMPTY_FRACTION = 0.05

_SPLIT_KEY = {name: i for i, name in enumerate(SPLITS)}
_SYNONYMS = {
    "circle": ("circle", "disc", "round dot"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
    "cross": ("cross", "plus sign"),
    "small": ("small", "tiny"),
    "medium": ("medium", "medium sized"),
    "large": ("large", "big"),
}


@dataclass(frozen=True)
class Scene:
    """Ground-truth factors of one scene (see the module docstring for ranges)."""

    shape: str | None
    color: str | None
    background: str
    size: float
    x: float
    y: float
    rotation: float
    present: bool = True
    hue: float | None = None

    def to_dict(self) -> dict:
        """The factors as a dict; ``hue`` only where the world drew one (the discrete world's labels have none)."""
        out = asdict(self)
        if out["hue"] is None:
            del out["hue"]
        return out

    @property
    def fill(self) -> tuple[int, int, int]:
        """The object's RGB: its colour name's, or at ``hue`` with the name's saturation and value."""
        if self.hue is None:
            return COLORS[self.color]
        if isinstance(self.hue, bool) or not isinstance(self.hue, numbers.Real) or not math.isfinite(self.hue):
            raise ValueError(f"`scene.hue` must be None or a finite number of degrees, got {self.hue!r}.")
        _, saturation, value = _HSV[self.color]
        return tuple(round(255 * c) for c in colorsys.hsv_to_rgb((self.hue % 360.0) / 360.0, saturation, value))


def _rng(seed: int, split: str) -> np.random.Generator:
    if split not in _SPLIT_KEY:
        raise ValueError(f"`split` must be one of {', '.join(SPLITS)}; got {split!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be an integer >= 0, got {seed!r}.")
    return np.random.default_rng([int(seed), _SPLIT_KEY[split], 0x5A17E5])


def _pairs(split: str) -> list[tuple[str, str]]:
    heldout = set(HELDOUT_PAIRS)
    if split == "heldout":
        return list(HELDOUT_PAIRS)
    if split == "all":
        return [(s, c) for s in SHAPES for c in COLORS]
    return [(s, c) for s in SHAPES for c in COLORS if (s, c) not in heldout]


def _check_spread(hue_spread) -> float:
    if isinstance(hue_spread, bool) or not isinstance(hue_spread, numbers.Real) or not 0 <= hue_spread <= 1:
        raise ValueError(f"`hue_spread` must be a number in [0, 1] (0: each colour name's exact RGB; 1: hues out "
                         f"to half way to the neighbouring names), got {hue_spread!r}.")
    return float(hue_spread)


def hue_range(color: str, hue_spread: float) -> tuple[float, float]:
    """The hues (degrees; ``lo`` may be below 0 or ``hi`` above 360, as offsets around the circle) that
    ``color`` takes at ``hue_spread``: from its own hue out to ``hue_spread`` x half the way to each
    neighbouring colour name's hue."""
    if color not in COLORS:
        raise ValueError(f"`color` must be one of {', '.join(COLORS)}; got {color!r}.")
    spread = _check_spread(hue_spread)
    own = HUES[color]
    below = min((own - h) % 360.0 for name, h in HUES.items() if name != color)
    above = min((h - own) % 360.0 for name, h in HUES.items() if name != color)
    return own - spread * below / 2, own + spread * above / 2


def sample_scene(seed: int, split: str = "train", *, hue_spread: float = 0.0) -> Scene:
    """The scene of ``seed`` in ``split``: deterministic, and independent across splits. With ``hue_spread``
    > 0 the object's hue is drawn within :func:`hue_range` (its own random stream: the other factors are
    the same at every spread)."""
    spread = _check_spread(hue_spread)
    rng = _rng(seed, split)
    background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    size = float(rng.uniform(*SIZE_RANGE))
    x, y = (float(v) for v in rng.uniform(size, 1.0 - size, size=2))
    empty = split != "heldout" and rng.random() < EMPTY_FRACTION
    pairs = _pairs(split)
    shape, color = pairs[rng.integers(len(pairs))]
    order = SYMMETRY[shape]
    rotation = float(rng.uniform(0.0, 2 * math.pi / order)) if order else 0.0
    if empty:
        return Scene(shape=None, color=None, background=background, size=0.0, x=0.5, y=0.5, rotation=0.0,
                     present=False)
    hue = None
    if spread > 0:
        lo, hi = hue_range(color, spread)
        hue = float(np.random.default_rng([int(seed), _SPLIT_KEY[split], 0x4E0E]).uniform(lo, hi)) % 360.0
    return Scene(shape=shape, color=color, background=background, size=size, x=x, y=y, rotation=rotation, hue=hue)


def _polygon(shape: str, cx: float, cy: float, r: float, rotation: float) -> list[tuple[float, float]]:
    """Vertices of a shape with circumradius r, centre (cx, cy), rotated by ``rotation`` (y grows down)."""
    if shape == "square":
        angles = [math.pi / 4 + k * math.pi / 2 for k in range(4)]
        radii = [r] * 4
    elif shape == "triangle":
        angles = [-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)]
        radii = [r] * 3
    elif shape == "star":
        angles = [-math.pi / 2 + k * math.pi / 5 for k in range(10)]
        radii = [r if k % 2 == 0 else 0.45 * r for k in range(10)]
    elif shape == "cross":
        a = 0.35 * r  # half the arm width; arms reach the circumradius
        arm = math.sqrt(r * r - a * a)
        points = [(a, arm), (a, a), (arm, a), (arm, -a), (a, -a), (a, -arm), (-a, -arm), (-a, -a), (-arm, -a),
                  (-arm, a), (-a, a), (-a, arm)]
        angles = [math.atan2(py, px) for px, py in points]
        radii = [math.hypot(px, py) for px, py in points]
    else:
        raise ValueError(f"`shape` must be one of {', '.join(SHAPES)}; got {shape!r}.")
    return [(cx + rad * math.cos(ang + rotation), cy + rad * math.sin(ang + rotation))
            for ang, rad in zip(angles, radii, strict=True)]


def render(scene: Scene, size: int = 64, *, supersample: int = 4) -> PIL.Image.Image:
    """Draw ``scene`` as an RGB image ``size`` x ``size``, anti-aliased by supersampling."""
    if not isinstance(scene, Scene):
        raise TypeError(f"`scene` must be a Scene, got {type(scene).__name__}.")
    if scene.background not in BACKGROUNDS:
        raise ValueError(f"`scene.background` must be one of {', '.join(BACKGROUNDS)}; got {scene.background!r}.")
    big = size * supersample
    image = PIL.Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    if scene.present:
        if scene.color not in COLORS:
            raise ValueError(f"`scene.color` must be one of {', '.join(COLORS)}; got {scene.color!r}.")
        draw = PIL.ImageDraw.Draw(image)
        cx, cy, r = scene.x * big, scene.y * big, scene.size * big
        fill = scene.fill
        if scene.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon(_polygon(scene.shape, cx, cy, r, scene.rotation), fill=fill)
    return image.resize((size, size), PIL.Image.Resampling.BOX)


def object_mask(scene: Scene, size: int = 64) -> np.ndarray:
    """``(size, size)`` bool: the pixels the object changes (its anti-aliased rim included), found by rendering
    the scene with and without it. All False for an empty scene. For inpainting tests and benchmarks."""
    with_object = np.asarray(render(scene, size), dtype=np.int16)
    without = np.asarray(render(replace(scene, present=False, shape=None, color=None), size), dtype=np.int16)
    return np.abs(with_object - without).sum(-1) > 0


def size_word(size: float) -> str:
    """Coarse size word: small / medium / large (thirds of SIZE_RANGE)."""
    lo, hi = SIZE_RANGE
    third = (hi - lo) / 3
    return "small" if size < lo + third else "large" if size >= hi - third else "medium"


def position_words(x: float, y: float) -> str:
    """Coarse position: "top left", "center", "bottom", "right"... (thirds of the image)."""
    col = "left" if x < 1 / 3 else "right" if x >= 2 / 3 else ""
    row = "top" if y < 1 / 3 else "bottom" if y >= 2 / 3 else ""
    return f"{row} {col}".strip() or "center"


_TEMPLATES = (
    "a {size} {color} {shape} in the {pos} on a {bg} background",
    "{color} {shape}, {size}, {pos}, {bg} background",
    "a {color} {shape} on a {bg} background",
    "a {size} {shape} in the {pos}",
    "{bg} background with a {color} {shape} in the {pos}",
    "a picture of a {size} {color} {shape}",
    "a {color} {shape}",
    "{shape} in the {pos}, {color}, on {bg}",
)
_EMPTY_TEMPLATES = ("an empty {bg} background", "a plain {bg} background", "nothing on a {bg} background")
_EMPTY_CAPTION = 0.10  # share of the captions of scenes with an object that are "" (classifier-free guidance)
_DROP = 0.25  # chance of leaving out each of size, position, background


def caption(scene: Scene, seed: int = 0) -> str:
    """A caption for ``scene``; ``seed`` picks the template, synonyms and left-out attributes.

    The empty caption (classifier-free guidance's unconditional input) is given only to scenes with an
    object: an empty scene always says it is empty, so a model's samples for the empty prompt are scenes
    with an object, and an empty background is something a prompt asks for.
    """
    rng = np.random.default_rng([int(seed), 0xCA97])
    if rng.random() < _EMPTY_CAPTION and scene.present:
        return ""
    if not scene.present:
        return _EMPTY_TEMPLATES[rng.integers(len(_EMPTY_TEMPLATES))].format(bg=scene.background)
    template = _TEMPLATES[rng.integers(len(_TEMPLATES))]

    def pick(word):
        options = _SYNONYMS.get(word, (word,))
        return options[rng.integers(len(options))]

    fields = {"size": pick(size_word(scene.size)), "color": scene.color, "shape": pick(scene.shape),
              "pos": position_words(scene.x, scene.y), "bg": scene.background}
    text = template.format(**fields)
    # Sometimes leave out an attribute the template named (its words and their glue).
    for patterns in (("{size} ", ", {size}"), (" in the {pos}", ", {pos}"),
                     (" on a {bg} background", ", {bg} background", ", on {bg}")):
        if rng.random() < _DROP:
            for pattern in patterns:
                text = text.replace(pattern.format(**fields), "", 1)
    return " ".join(text.split())


def vocabulary() -> list[str]:
    """Every word a caption can contain, sorted."""
    words = set()
    for text in _TEMPLATES + _EMPTY_TEMPLATES:
        words.update(w.strip(",{}") for w in text.replace("{", " {").split() if not w.startswith("{"))
    for group in (SHAPES, COLORS, BACKGROUNDS, ("top", "bottom", "left", "right", "center")):
        words.update(group)
    for options in _SYNONYMS.values():
        for option in options:
            words.update(option.split())
    return sorted(w for w in words if w)


def make_dataset(n: int, split: str = "train", *, start: int = 0, size: int = 64, hue_spread: float = 0.0):
    """``n`` scenes of ``split`` from seeds ``start .. start + n - 1`` (``hue_spread``: see :func:`sample_scene`).

    Returns:
        images uint8 ``(n, size, size, 3)``, list of label dicts (factors plus ``seed``/``split``),
        list of captions (caption i uses seed ``start + i``).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be an integer >= 1, got {n!r}.")
    images = np.empty((n, size, size, 3), np.uint8)
    labels, captions = [], []
    for i in range(n):
        seed = start + i
        scene = sample_scene(seed, split, hue_spread=hue_spread)
        images[i] = np.asarray(render(scene, size))
        labels.append({**scene.to_dict(), "seed": seed, "split": split})
        captions.append(caption(scene, seed))
    return images, labels, captions


def _write_sample(out: Path, n: int, split: str, start: int, hue_spread: float = 0.0) -> None:
    out.mkdir(parents=True, exist_ok=True)
    images, labels, captions = make_dataset(n, split, start=start, hue_spread=hue_spread)
    with open(out / "labels.jsonl", "w") as f:
        for image, label, text in zip(images, labels, captions, strict=True):
            name = f"{split}-{label['seed']:05d}.png"
            PIL.Image.fromarray(image).save(out / name, optimize=True)
            f.write(json.dumps({"file": name, "caption": text, **label}) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write a sample of the shapes world (PNG files + labels.jsonl).")
    parser.add_argument("--out", required=True, help="folder to write (created if missing)")
    parser.add_argument("--n", type=int, default=48, help="scenes per split")
    parser.add_argument("--splits", default="train,heldout", help="comma-separated splits")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--hue-spread", type=float, default=0.0,
                        help="0..1: continuous hues within each colour name's share (0: each name's exact RGB)")
    args = parser.parse_args(argv)
    try:
        _check_spread(args.hue_spread)
    except ValueError:
        parser.error(f"--hue-spread must be in [0, 1]; got {args.hue_spread}")
    out = Path(args.out)
    splits = args.splits.split(",")
    for split in splits:
        if split not in SPLITS:
            raise SystemExit(f"--splits: {split!r} is not one of {', '.join(SPLITS)}.")
        if (out / split / "labels.jsonl").exists():
            raise SystemExit(f"{out / split / 'labels.jsonl'} exists; remove it first (nothing is overwritten).")
    for split in splits:
        _write_sample(out / split, args.n, split, args.start, args.hue_spread)
    print(f"wrote {args.n} scenes for each of {', '.join(splits)} under {out}")


if __name__ == "__main__":
    main()
