"""Directions: unit vectors in one space with their provenance, banks of them, and the finders that make them.

A :class:`Direction` is what ``model.generate(..., edits=[(direction, strength)])`` takes: ``space``
("xT", "z0", "prompt" or "h"), a unit ``vector`` with the shape of one sample of that space, ``scale``
(the samples' standard deviation along it, so that a strength of 1 moves one standard deviation),
optionally a ``timesteps`` window and a ``layer`` for h (None: the bottleneck; see
:func:`latentlib.edits.h_hook`), and ``provenance`` (what made it: model, method, parameters,
samples, seeds, versions). A :class:`Turn` is the edit for a circular factor (a rotation, a hue): two
vectors span a plane where the factor lies on a ring, and a strength turns each sample round it
(:meth:`PCADirections.turn` makes one from two components). A :class:`DirectionBank` is a named set of
both, saved as safetensors + JSON (never pickle); loading it for a model whose spaces have other shapes
is refused.

Finders follow scikit-learn: hyper-parameters in ``__init__``, ``fit(X, y=None)`` returns self, fitted
results end in ``_``. ``X`` is ``(N, *sample_shape)`` (a tensor or array; :func:`latentlib.collect`
makes them) and is flattened per sample.

- :class:`PCADirections`: scikit-learn's PCA (full or randomised SVD), ``IncrementalPCA`` for data
  fed in batches, or ``torch.pca_lowrank``; ``components_``, ``explained_variance_ratio_``,
  ``transform``, ``inverse_transform``, ``direction(i)``, ``turn(i, j)``.
- :class:`MeanDifference`: the mean of one group minus the other's.
- :class:`LinearBoundary`: the normal of a logistic-regression or linear-SVM boundary (InterFaceGAN).
- :class:`RidgeDirection`: a ridge regression's coefficients, for a continuous attribute.
- :func:`text_direction`: from two prompts, in prompt space.
- :func:`orthogonalize`: a direction with others projected out (InterFaceGAN's conditional edit).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .edits import BOTTLENECK, SPACES
from .fast import _FUSED_LAYERS

__all__ = ["Direction", "DirectionBank", "LinearBoundary", "MeanDifference", "PCADirections", "RidgeDirection",
           "Turn", "model_signature", "orthogonalize", "shape_key", "space_shapes", "text_direction", "weight_hash"]

#: Bank formats: 1 holds directions only; 2 may hold turns (``kind: "turn"``). A bank without a turn is
#: still written as format 1, so a latentlib from before turns reads it; one with a turn is format 2, which
#: such a latentlib refuses by its number instead of failing on a missing "scale". Banks with turns written
#: as format 1 (before format 2 existed) are read too: each entry's ``kind`` says what it is.
_FORMAT = 1
_FORMAT_TURNS = 2
_FORMATS = (_FORMAT, _FORMAT_TURNS)


def _versions() -> dict:
    import diffusers
    import sklearn

    from . import __version__

    return {"latentlib": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "scikit-learn": sklearn.__version__}


@dataclass
class Direction:
    """A unit vector in one space, with its name, scale and provenance (see the module docstring).

    The constructor checks that ``vector`` has unit norm (to 1e-3); :meth:`from_vector` normalises one.
    """

    vector: torch.Tensor
    space: str
    name: str = ""
    scale: float = 1.0
    timesteps: tuple[float, float] | None = None
    provenance: dict = field(default_factory=dict)
    layer: str | None = None

    def __post_init__(self):
        if self.space not in SPACES:
            raise ValueError(f"`space` must be one of {', '.join(SPACES)}; got {self.space!r}.")
        if self.layer is not None:
            if not isinstance(self.layer, str) or not self.layer:
                raise TypeError(f"`layer` must be a non-empty string naming a UNet module, or None; got {self.layer!r}.")
            if self.space != "h":
                raise ValueError(f"`layer` ({self.layer!r}) applies to h directions only; this one is in {self.space}.")
        if not isinstance(self.vector, torch.Tensor) or not self.vector.is_floating_point():
            raise TypeError(f"`vector` must be a float tensor, got {type(self.vector).__name__}.")
        if not bool(torch.isfinite(self.vector).all()):
            raise ValueError("`vector` contains NaN or inf.")
        norm = float(self.vector.float().norm())
        if abs(norm - 1.0) > 1e-3:
            raise ValueError(f"`vector` must have unit norm, got {norm:.6g}; use Direction.from_vector to normalise it.")
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"`scale` must be a finite number > 0, got {self.scale!r}.")
        if self.timesteps is not None:
            high, low = self.timesteps
            if high < low:
                raise ValueError(f"`timesteps` must be (high, low) with high >= low, got {self.timesteps!r}.")
            self.timesteps = (float(high), float(low))
        self.vector = self.vector.detach().to("cpu", torch.float32)
        self.scale = float(self.scale)

    @classmethod
    def from_vector(cls, vector, space: str, **kwargs) -> Direction:
        """A direction along ``vector`` (any norm > 0; a numpy array or tensor), normalised to unit length."""
        v = torch.as_tensor(np.asarray(vector) if not isinstance(vector, torch.Tensor) else vector).float()
        norm = float(v.norm())
        if not math.isfinite(norm) or norm == 0:
            raise ValueError(f"`vector` has norm {norm}; a direction needs a finite, non-zero vector.")
        return cls(vector=v / norm, space=space, **kwargs)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.vector.shape)

    def __neg__(self) -> Direction:
        return replace(self, vector=-self.vector, name=f"-{self.name}" if self.name else "",
                       provenance={**self.provenance, "negated": True})

    def cosine(self, other: Direction) -> float:
        """Cosine similarity with ``other`` (same space, h layer and size)."""
        if not isinstance(getattr(other, "vector", None), torch.Tensor):
            raise TypeError(f"`other` must be a Direction (a unit vector), got {type(other).__name__}.")
        if shape_key(other) != shape_key(self) or other.vector.numel() != self.vector.numel():
            raise ValueError(f"cannot compare a {shape_key(self)} direction of {self.vector.numel()} values with a "
                             f"{shape_key(other)} direction of {other.vector.numel()} values.")
        return float(self.vector.flatten() @ other.vector.flatten())

    def project(self, X) -> np.ndarray:
        """Coordinates of samples ``X`` (N, ...) along this direction (not centred)."""
        flat = _flat(X)
        if flat.shape[1] != self.vector.numel():
            raise ValueError(f"`X` samples have {flat.shape[1]} values; this direction has {self.vector.numel()}.")
        return flat @ self.vector.flatten().numpy().astype(flat.dtype)

    def with_scale_from(self, X) -> Direction:
        """The same direction with ``scale`` = the standard deviation of ``X`` along it."""
        return replace(self, scale=float(np.std(self.project(X))) or 1.0)


@dataclass
class Turn:
    """A turn in a plane: the edit for a circular factor (an object's rotation, a hue, a viewing angle).

    A linear direction moves every sample the same way, so on a factor that goes round a circle it pushes
    samples towards one end of the circle and stalls there. Where two directions hold such a factor as a
    ring (two PCA components whose scatter plot is a circle: :meth:`PCADirections.turn`), a turn moves each
    sample *around* the ring instead: a strength of 1 turns the sample's coordinates in the plane of
    ``vectors[0]`` and ``vectors[1]`` by ``degrees`` degrees about ``centre``, from the first vector
    towards the second, and leaves the rest of the sample as it is. The coordinates are taken in units of
    ``scales`` (the samples' standard deviations along the two vectors), so an elliptic ring turns as a
    circle. Strength 0 changes nothing. In h the turn acts at every step of its window (like a direction),
    about the centre its samples had at the one step they were collected at (``collect``'s ``h_step``, the
    middle step by default); the default model's rotation ring is measured that way (bench/README.md).

    Attributes:
        vectors: ``(2, *sample_shape)``: two orthonormal vectors (checked to 1e-3); :meth:`from_vectors`
            orthonormalises any two independent ones. A prompt-space turn of ``(D,)`` vectors turns each
            token's embedding about the same centre.
        space, name, timesteps, layer, provenance: as for :class:`Direction`.
        centre: the ring's centre, as coordinates along the two vectors (the samples' mean there).
        scales: the samples' standard deviations along the two vectors (> 0).
        degrees: degrees turned per unit of strength (> 0).
    """

    vectors: torch.Tensor
    space: str
    name: str = ""
    centre: tuple[float, float] = (0.0, 0.0)
    scales: tuple[float, float] = (1.0, 1.0)
    degrees: float = 10.0
    timesteps: tuple[float, float] | None = None
    provenance: dict = field(default_factory=dict)
    layer: str | None = None

    def __post_init__(self):
        if not isinstance(self.vectors, torch.Tensor) or not self.vectors.is_floating_point() \
                or self.vectors.ndim < 2 or self.vectors.shape[0] != 2:
            raise TypeError(f"`vectors` must be a float tensor of shape (2, *sample_shape), got "
                            f"{getattr(self.vectors, 'shape', type(self.vectors).__name__)!s}.")
        self.vectors = self.vectors.detach().to("cpu", torch.float32)
        flat = self.vectors.reshape(2, -1)
        gram = flat @ flat.T
        if not bool(torch.isfinite(gram).all()) or float((gram - torch.eye(2)).abs().max()) > 1e-3:
            raise ValueError(f"`vectors` must be two finite orthonormal vectors (v.v = 1, u.v = 0), got the dot "
                             f"products {gram.tolist()}; use Turn.from_vectors to orthonormalise them.")
        # the checks Direction makes on space, layer and timesteps, on a stand-in with the first vector
        self.timesteps = Direction(vector=self.vectors[0], space=self.space, timesteps=self.timesteps,
                                   layer=self.layer).timesteps
        for arg, pair, positive in (("centre", self.centre, False), ("scales", self.scales, True)):
            values = tuple(float(v) for v in pair) if isinstance(pair, (tuple, list, np.ndarray)) and len(pair) == 2 \
                and all(isinstance(v, numbers.Real) for v in pair) else None
            if values is None or not all(math.isfinite(v) and (v > 0 or not positive) for v in values):
                raise ValueError(f"`{arg}` must be two finite numbers{' > 0' if positive else ''}, got {pair!r}.")
            setattr(self, arg, values)
        if isinstance(self.degrees, bool) or not isinstance(self.degrees, numbers.Real) \
                or not math.isfinite(self.degrees) or self.degrees <= 0:
            raise ValueError(f"`degrees` (per unit of strength) must be a finite number > 0, got {self.degrees!r}.")
        self.degrees = float(self.degrees)

    @classmethod
    def from_vectors(cls, first, second, space: str, *, X=None, **kwargs) -> Turn:
        """The turn in the plane of two independent vectors (any norms; Gram-Schmidt makes them orthonormal,
        keeping ``first``'s direction). With samples ``X`` (N, ...), ``centre`` and ``scales`` are their
        mean and standard deviations along the two vectors."""
        u, v = (torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).float() for a in (first, second))
        if u.shape != v.shape:
            raise ValueError(f"`first` and `second` must have the same shape, got {tuple(u.shape)} and {tuple(v.shape)}.")
        norm = float(u.norm())
        if not math.isfinite(norm) or norm == 0:
            raise ValueError(f"`first` has norm {norm}; a turn needs two finite, independent vectors.")
        u = u / norm
        v = v - (v.flatten() @ u.flatten()) * u
        norm = float(v.norm())
        if not math.isfinite(norm) or norm < 1e-6 * max(1.0, float(torch.as_tensor(second).float().norm())):
            raise ValueError("`second` is (nearly) parallel to `first`; a turn needs two independent vectors.")
        turn = cls(vectors=torch.stack([u, v / norm]), space=space, **kwargs)
        if X is not None:  # measured on the samples (ddof 1, as PCA's variances), in place of any given
            coords = turn.project(X)
            turn = replace(turn, centre=tuple(coords.mean(0).tolist()),
                           scales=tuple(float(s) or 1.0 for s in coords.std(0, ddof=1)))
        return turn

    @property
    def shape(self) -> tuple[int, ...]:
        """One sample's shape (the shape of each vector)."""
        return tuple(self.vectors.shape[1:])

    def __neg__(self) -> Turn:
        """The turn the other way round (the second vector, and the centre along it, negated)."""
        return replace(self, vectors=torch.stack([self.vectors[0], -self.vectors[1]]),
                       centre=(self.centre[0], -self.centre[1]), name=f"-{self.name}" if self.name else "",
                       provenance={**self.provenance, "negated": True})

    @property
    def rollable(self) -> bool:
        """Whether :meth:`rolled` applies: the samples are on a grid, (C, H, W) (xT, z0, h; not prompt)."""
        return self.vectors.ndim == 4

    def rolled(self, dy: int, dx: int) -> Turn:
        """The same turn for an object moved by ``(dy, dx)`` cells of the sample's grid: both vectors rolled
        along their last two (spatial) axes (``torch.roll``, so what leaves one edge comes back at the
        other), ``centre`` and ``scales`` kept. A spatial space's ring is fitted where the samples' objects
        were (the default model's rotation ring: squares in the middle of h's 8x8 grid); an object that
        landed a cell or two away shows its rotation in other cells, and the turn rolled to it reaches it
        (bench/README.md, session 25). Only for (C, H, W) samples (xT, z0, h); ``dy``/``dx`` are whole cells.
        """
        for arg, value in (("dy", dy), ("dx", dx)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"`{arg}` must be a whole number of cells, got {value!r}.")
        if not self.rollable:
            raise ValueError(f"rolled() needs spatial samples (C, H, W); this {self.space} turn's samples have shape "
                             f"{self.shape}.")
        if (dy, dx) == (0, 0):
            return self
        return replace(self, vectors=torch.roll(self.vectors, shifts=(int(dy), int(dx)), dims=(-2, -1)),
                       provenance={**self.provenance, "rolled": [int(dy), int(dx)]})

    def project(self, X) -> np.ndarray:
        """Coordinates ``(N, 2)`` of samples ``X`` (N, ...) along the two vectors (not centred)."""
        flat = _flat(X)
        if flat.shape[1] != self.vectors[0].numel():
            raise ValueError(f"`X` samples have {flat.shape[1]} values; this turn's vectors have {self.vectors[0].numel()}.")
        return flat @ self.vectors.reshape(2, -1).numpy().astype(flat.dtype).T

    def angle(self, X) -> np.ndarray:
        """Where samples ``X`` sit on the ring: the angle (radians, -pi..pi) of their coordinates about
        ``centre`` in units of ``scales``, from the first vector towards the second."""
        coords = (self.project(X) - np.asarray(self.centre)) / np.asarray(self.scales)
        return np.arctan2(coords[:, 1], coords[:, 0])

    def apply(self, X: torch.Tensor, strength: float) -> torch.Tensor:
        """``X`` (N, ...) with every sample turned by ``strength * degrees`` degrees (a new tensor)."""
        n = self.vectors[0].numel()
        dtype = torch.promote_types(X.dtype, torch.float32)  # float32 at least; float64 stays float64
        flat = X.reshape(-1, n).to(dtype)
        basis = self.vectors.reshape(2, n).to(X.device, dtype)
        centre = torch.tensor(self.centre, device=X.device, dtype=dtype)
        scales = torch.tensor(self.scales, device=X.device, dtype=dtype)
        coords = (flat @ basis.T - centre) / scales  # (N, 2), unit scale
        theta = math.radians(float(strength) * self.degrees)
        c, s = math.cos(theta), math.sin(theta)
        turned = torch.stack([c * coords[:, 0] - s * coords[:, 1], s * coords[:, 0] + c * coords[:, 1]], dim=1)
        moved = flat + ((turned - coords) * scales) @ basis
        return moved.to(X.dtype).reshape(X.shape)


def _flat(X) -> np.ndarray:
    if isinstance(X, torch.Tensor):
        X = X.detach().to("cpu", torch.float32).numpy()
    X = np.asarray(X, dtype=np.float32)
    if X.ndim < 2:
        raise ValueError(f"`X` must be (N, ...) samples, got shape {X.shape}.")
    return X.reshape(X.shape[0], -1)


# -- model signatures ---------------------------------------------------------------------------------
def shape_key(direction) -> str:
    """The key of ``direction``'s sample shape in :func:`space_shapes`: its space, or "h@LAYER"."""
    return _shape_key(direction.space, getattr(direction, "layer", None))


def _shape_key(space: str, layer: str | None) -> str:
    return space if layer in (None, BOTTLENECK) else f"{space}@{layer}"


@torch.no_grad()
def space_shapes(model, layers=()) -> dict[str, tuple[int, ...]]:
    """The shape of one sample of each space for ``model`` (h by one UNet call on zeros), plus "h@LAYER"
    for each of ``layers`` (h taken at another UNet module, :func:`latentlib.edits.h_hook`)."""
    from .edits import h_hook

    h, w = model.default_size
    latent = (model.latent_channels, h // model.vae_scale_factor, w // model.vae_scale_factor)
    seen: dict = {}
    wanted = [None, *[layer for layer in layers if layer not in (None, BOTTLENECK)]]
    handles = []

    def grab(key):
        def record(x):
            seen.setdefault(key, tuple(x.shape[1:]))  # returns None: h is left as it is

        return record

    try:
        for layer in wanted:
            handles.append(h_hook(model.unet, grab(_shape_key("h", layer)), layer))
        emb = model.embed("")
        added = None
        if model.is_sdxl:
            added = {"text_embeds": emb.pooled, "time_ids": model._add_time_ids(h, w).to(model.device, model.dtype)}
        cond = None
        if model.unet.config.time_cond_proj_dim is not None:
            cond = torch.zeros(1, model.unet.config.time_cond_proj_dim, device=model.device, dtype=model.dtype)
        model.unet(torch.zeros(1, *latent, device=model.device, dtype=model.dtype), torch.tensor(500, device=model.device),
                   encoder_hidden_states=emb.embeds, added_cond_kwargs=added, timestep_cond=cond)
    finally:
        for handle in handles:
            handle.remove()
    return {"xT": latent, "z0": latent, "prompt": tuple(model.embedding_shape), **seen}


def model_signature(model, layers=()) -> dict:
    """What a bank records about the model it was made for: name, :func:`weight_hash`, the spaces' shapes
    (with "h@LAYER" for each of ``layers``)."""
    return {"name": str(model.name), "weight_hash": weight_hash(model),
            "shapes": {k: list(v) for k, v in space_shapes(model, layers).items()}}


_FUSED = re.compile(r"\.(" + "|".join(_FUSED_LAYERS) + r")\.")


def weight_hash(model) -> str:
    """16 hex digits from the networks' configs and, for every tensor, its name, shape and first 64 values:
    cheap even for SDXL, and different for any retrained or other model."""
    digest = hashlib.sha256()
    for module in (model.unet, model.text_encoder, model.text_encoder_2, model.vae):
        if module is None:
            continue
        config = getattr(module, "config", {})
        digest.update(json.dumps(dict(config) if not hasattr(config, "to_dict") else config.to_dict(),
                                 sort_keys=True, default=str).encode())
        for key, value in module.state_dict().items():
            if _FUSED.search(key):  # the fast path's fused q/k/v copies: the same weights, fused or not
                continue
            digest.update(key.encode())
            digest.update(str(tuple(value.shape)).encode())
            digest.update(value.detach().flatten()[:64].to("cpu", torch.float32).numpy().tobytes())
    return digest.hexdigest()[:16]


# -- banks ----------------------------------------------------------------------------------------------
class DirectionBank(Mapping):
    """Named directions for one model, saved as ``NAME.safetensors`` (vectors) + ``NAME.json`` (the rest).

    Args:
        directions: ``Direction`` and ``Turn`` objects (each needs a unique, non-empty ``name``).
        model: :func:`model_signature` of the model they belong to (or a ``Model``; its signature is taken).
    """

    def __init__(self, directions: Iterable[Direction] = (), *, model=None):
        self._live = None  # the Model itself, when given: h shapes of other layers are measured on it
        if model is not None and not isinstance(model, Mapping):
            self._live, model = model, model_signature(model)
        self.model = {**model, "shapes": dict(model["shapes"])} if model is not None else None
        self._items: dict[str, Direction] = {}
        for direction in directions:
            self.add(direction)

    def __getitem__(self, name: str) -> Direction:
        if name not in self._items:
            raise KeyError(f"no direction named {name!r} in this bank; it has: {', '.join(self._items) or 'none'}.")
        return self._items[name]

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"DirectionBank({', '.join(f'{k} ({d.space})' for k, d in self._items.items())})"

    def add(self, direction: Direction | Turn, *, overwrite: bool = False) -> None:
        if not isinstance(direction, (Direction, Turn)):
            raise TypeError(f"a bank holds Direction and Turn objects, got {type(direction).__name__}.")
        if not direction.name:
            raise ValueError("a direction in a bank needs a `name`.")
        if direction.name in self._items and not overwrite:
            raise ValueError(f"the bank already has a direction named {direction.name!r}; pass overwrite=True to "
                             f"replace it.")
        key = shape_key(direction)
        if self.model is not None and key not in self.model["shapes"] and self._live is not None:
            self.model["shapes"][key] = list(space_shapes(self._live, [direction.layer])[key])
        if self.model is not None and key in self.model["shapes"]:
            expected = tuple(self.model["shapes"][key])
            if direction.shape != expected and math.prod(direction.shape) != math.prod(expected):
                where = direction.space if key == direction.space else f"{direction.space} (layer {direction.layer})"
                raise ValueError(f"direction {direction.name!r} has shape {direction.shape}; this bank's "
                                 f"model has {where} samples of shape {expected}.")
        self._items[direction.name] = direction

    def save(self, path, *, overwrite: bool = False) -> tuple[Path, Path]:
        """Write ``path`` (.safetensors) and its .json beside it; an existing bank is kept unless ``overwrite``."""
        from safetensors.torch import save_file

        tensors_path, meta_path = _bank_paths(path)
        for p in (tensors_path, meta_path):
            if p.exists() and not overwrite:
                raise FileExistsError(f"{p} exists; pass overwrite=True to replace it (nothing was written).")
        tensors_path.parent.mkdir(parents=True, exist_ok=True)
        save_file({name: (d.vectors if isinstance(d, Turn) else d.vector).contiguous()
                   for name, d in self._items.items()}, str(tensors_path))
        turns = any(isinstance(d, Turn) for d in self._items.values())
        meta = {"format": _FORMAT_TURNS if turns else _FORMAT, "model": self.model, "versions": _versions(),
                "directions": {name: {"space": d.space, "shape": list(d.shape), "timesteps": d.timesteps,
                                      "layer": d.layer, "provenance": d.provenance,
                                      **({"kind": "turn", "centre": list(d.centre), "scales": list(d.scales),
                                          "degrees": d.degrees} if isinstance(d, Turn) else {"scale": d.scale})}
                               for name, d in self._items.items()}}
        meta_path.write_text(json.dumps(meta, indent=1, default=str))
        return tensors_path, meta_path

    @classmethod
    def load(cls, path, *, model=None) -> DirectionBank:
        """Read a bank; with ``model``, refuse it when it was made for a model whose spaces have other shapes."""
        from safetensors.torch import load_file

        tensors_path, meta_path = _bank_paths(path)
        for p in (tensors_path, meta_path):
            if not p.is_file():
                raise FileNotFoundError(f"no direction bank at {p} (a bank is a .safetensors file with a .json beside it).")
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or "format" not in meta or "directions" not in meta:
            raise ValueError(f"{meta_path} is not a direction bank (it has no bank format or directions).")
        if meta.get("format") not in _FORMATS:
            raise ValueError(f"{meta_path} is bank format {meta.get('format')!r}; this latentlib reads formats "
                             f"{', '.join(map(str, _FORMATS))} (a newer latentlib may read it).")
        vectors = load_file(str(tensors_path))
        if model is not None and meta.get("model"):
            keys = {}
            for info in meta["directions"].values():
                key = _shape_key(info["space"], info.get("layer"))
                recorded = meta["model"]["shapes"].get(key)  # else the direction's own (maybe flat) shape
                keys.setdefault(key, (recorded, True) if recorded is not None else (info["shape"], False))
            layers = [key.split("@", 1)[1] for key in keys if "@" in key]
            try:
                mine = model_signature(model, layers)
            except ValueError as error:  # a layer this model does not have
                raise ValueError(f"this bank was made for {meta['model']['name']!r}; {error}") from None
            for key, (theirs, exact) in sorted(keys.items()):
                ours = mine["shapes"][key]
                if (list(theirs) != list(ours)) if exact else (math.prod(theirs) != math.prod(ours)):
                    raise ValueError(
                        f"this bank was made for {meta['model']['name']!r}, whose {key} samples have shape "
                        f"{tuple(theirs)}; {mine['name']!r} has {tuple(ours)}. Directions do not carry over between "
                        f"models of different shapes.")
        bank = cls(model=meta.get("model"))
        if model is not None and not isinstance(model, Mapping) and bank.model is not None:
            bank._live = model  # directions added later at a new h layer get their shape measured
        for name, info in meta["directions"].items():
            common = {"space": info["space"], "name": name, "provenance": info["provenance"], "layer": info.get("layer"),
                      "timesteps": tuple(info["timesteps"]) if info["timesteps"] else None}
            kind = info.get("kind", "direction")
            if kind == "turn":
                bank.add(Turn(vectors=vectors[name], centre=tuple(info["centre"]), scales=tuple(info["scales"]),
                              degrees=info["degrees"], **common))
            elif kind == "direction":
                bank.add(Direction(vector=vectors[name], scale=info["scale"], **common))
            else:
                raise ValueError(f"{meta_path}: direction {name!r} is of kind {kind!r}; this latentlib reads "
                                 f"'direction' and 'turn'.")
        return bank


def _bank_paths(path) -> tuple[Path, Path]:
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


# -- finders ----------------------------------------------------------------------------------------------
class PCADirections:
    """Principal directions of samples, scikit-learn style.

    Args:
        n_components: how many components to keep.
        method: "auto" (scikit-learn's PCA, which picks full or randomised SVD by size), "full",
            "randomized", "incremental" (``IncrementalPCA``, fed ``batch_size`` samples at a time: data
            larger than memory can come in through :meth:`partial_fit`), or "lowrank" (``torch.pca_lowrank``).
        batch_size: for "incremental".
        random_state: seeds the randomised solvers.
    """

    METHODS = ("auto", "full", "randomized", "incremental", "lowrank")

    def __init__(self, n_components: int = 8, *, method: str = "auto", batch_size: int = 1024, random_state: int = 0):
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
            raise ValueError(f"`n_components` must be an integer >= 1, got {n_components!r}.")
        if method not in self.METHODS:
            raise ValueError(f"`method` must be one of {', '.join(self.METHODS)}; got {method!r}.")
        self.n_components, self.method, self.batch_size, self.random_state = n_components, method, batch_size, random_state

    def fit(self, X, y=None, *, space: str | None = None) -> PCADirections:
        """Fit on ``X`` (N, ...); ``space`` is recorded for :meth:`direction`."""
        flat = _flat(X)
        self.sample_shape_ = tuple(X.shape[1:])
        self.space_ = space
        self.n_samples_ = flat.shape[0]
        if self.n_components > min(flat.shape):
            raise ValueError(f"`n_components` is {self.n_components} but X has {flat.shape[0]} samples of "
                             f"{flat.shape[1]} values; use at most {min(flat.shape)}.")
        if self.method == "lowrank":
            data = torch.from_numpy(flat)
            mean = data.mean(0)
            gen_state = torch.random.get_rng_state()
            torch.manual_seed(self.random_state)
            try:
                _, s, v = torch.pca_lowrank(data - mean, q=min(self.n_components + 10, min(flat.shape)), center=False,
                                            niter=4)
            finally:
                torch.random.set_rng_state(gen_state)
            self.mean_ = mean.numpy()
            self.components_ = v[:, : self.n_components].T.numpy()
            variance = (s**2 / (flat.shape[0] - 1)).numpy()
            total = float(((data - mean) ** 2).sum() / (flat.shape[0] - 1))
            self.explained_variance_ = variance[: self.n_components]
            self.explained_variance_ratio_ = self.explained_variance_ / total
            self.components_ = _sign_fix(self.components_)
            return self
        from sklearn.decomposition import PCA, IncrementalPCA

        if self.method == "incremental":
            pca = IncrementalPCA(n_components=self.n_components, batch_size=self.batch_size)
        else:
            solver = {"auto": "auto", "full": "full", "randomized": "randomized"}[self.method]
            pca = PCA(n_components=self.n_components, svd_solver=solver, random_state=self.random_state)
        pca.fit(flat)
        self._sk = pca
        self.mean_ = pca.mean_
        self.components_ = pca.components_
        self.explained_variance_ = pca.explained_variance_
        self.explained_variance_ratio_ = pca.explained_variance_ratio_
        return self

    def partial_fit(self, X, y=None, *, space: str | None = None) -> PCADirections:
        """Feed one batch to an "incremental" PCA (for sample sets larger than memory); call it per batch."""
        if self.method != "incremental":
            raise ValueError(f"partial_fit needs method='incremental', this one is {self.method!r}.")
        from sklearn.decomposition import IncrementalPCA

        flat = _flat(X)
        if not hasattr(self, "_sk"):
            self._sk = IncrementalPCA(n_components=self.n_components, batch_size=self.batch_size)
            self.sample_shape_, self.space_, self.n_samples_ = tuple(X.shape[1:]), space, 0
        elif tuple(X.shape[1:]) != self.sample_shape_:
            raise ValueError(f"this batch has samples of shape {tuple(X.shape[1:])}; earlier ones had {self.sample_shape_}.")
        self._sk.partial_fit(flat)
        self.n_samples_ += flat.shape[0]
        self.mean_, self.components_ = self._sk.mean_, self._sk.components_
        self.explained_variance_, self.explained_variance_ratio_ = (self._sk.explained_variance_,
                                                                    self._sk.explained_variance_ratio_)
        return self

    def _check(self):
        if not hasattr(self, "components_"):
            raise RuntimeError("this PCADirections is not fitted yet; call fit(X) first.")

    def transform(self, X) -> np.ndarray:
        """Coordinates of ``X`` on the components (centred), ``(N, n_components)``."""
        self._check()
        return (_flat(X) - self.mean_) @ self.components_.T

    def inverse_transform(self, Z) -> np.ndarray:
        """Samples ``(N, *sample_shape)`` from component coordinates ``Z``."""
        self._check()
        flat = np.asarray(Z, dtype=np.float32) @ self.components_ + self.mean_
        return flat.reshape(flat.shape[0], *self.sample_shape_)

    def direction(self, i: int, *, name: str | None = None, space: str | None = None, provenance=None,
                  layer: str | None = None) -> Direction:
        """Component ``i`` as a :class:`Direction` whose scale is that component's standard deviation."""
        self._check()
        space = space or self.space_
        if space is None:
            raise ValueError("say which `space` these samples came from (fit(..., space=) or direction(..., space=)).")
        vector = torch.from_numpy(np.ascontiguousarray(self.components_[i])).reshape(self.sample_shape_)
        prov = {"method": f"pca ({self.method})", "component": i, "n_components": self.n_components,
                "explained_variance_ratio": float(self.explained_variance_ratio_[i]), "samples": self.n_samples_,
                **(provenance or {})}
        return Direction.from_vector(vector, space, name=name or f"pc{i}",
                                     scale=float(math.sqrt(max(self.explained_variance_[i], 1e-12))), provenance=prov,
                                     layer=layer)


    def turn(self, i: int, j: int, *, degrees: float = 10.0, name: str | None = None, space: str | None = None,
             provenance=None, layer: str | None = None) -> Turn:
        """The :class:`Turn` in the plane of components ``i`` and ``j``: for a circular factor that these two
        hold as a ring (plot ``transform(X)[:, [i, j]]``: a ring, not a blob). Its centre is the samples'
        mean and its scales the two components' standard deviations; strength 1 turns ``degrees`` degrees
        from component ``i`` towards ``j``."""
        self._check()
        k = self.n_components
        if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c < k for c in (i, j)) or i == j:
            raise ValueError(f"`i` and `j` must be two different components in 0..{k - 1}, got {i!r} and {j!r}.")
        space = space or self.space_
        if space is None:
            raise ValueError("say which `space` these samples came from (fit(..., space=) or turn(..., space=)).")
        vectors = torch.from_numpy(np.ascontiguousarray(self.components_[[i, j]], dtype=np.float32))
        vectors = vectors.reshape(2, *self.sample_shape_)
        centre = tuple(float(c) for c in self.components_[[i, j]] @ self.mean_)
        scales = tuple(float(math.sqrt(max(self.explained_variance_[c], 1e-12))) for c in (i, j))
        prov = {"method": f"pca ({self.method}) turn", "components": [int(i), int(j)], "n_components": k,
                "explained_variance_ratio": [float(self.explained_variance_ratio_[c]) for c in (i, j)],
                "samples": self.n_samples_, **(provenance or {})}
        return Turn(vectors=vectors, space=space, name=name or f"pc{i}-pc{j} turn", centre=centre, scales=scales,
                    degrees=degrees, provenance=prov, layer=layer)


def _sign_fix(components: np.ndarray) -> np.ndarray:
    """scikit-learn's sign convention (svd_flip, u-based is data-dependent); here: largest |value| positive."""
    signs = np.sign(components[np.arange(components.shape[0]), np.abs(components).argmax(1)])
    return components * signs[:, None]


def _binary(y, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"`y` must have one label per sample ({n}), got shape {y.shape}.")
    classes = np.unique(y)
    if len(classes) != 2:
        raise ValueError(f"`y` must hold exactly two classes, got {len(classes)}: {classes[:5].tolist()}.")
    return y == classes[1]


class MeanDifference:
    """The direction from the mean of class 0 to the mean of class 1 of ``y`` (sorted class order)."""

    def fit(self, X, y) -> MeanDifference:
        flat = _flat(X)
        positive = _binary(y, flat.shape[0])
        self.sample_shape_ = tuple(X.shape[1:])
        self.classes_ = np.unique(np.asarray(y))
        self.vector_ = flat[positive].mean(0) - flat[~positive].mean(0)
        self.n_samples_ = flat.shape[0]
        return self

    def direction(self, space: str, *, name: str = "", X=None, provenance=None, layer: str | None = None) -> Direction:
        d = Direction.from_vector(torch.from_numpy(self.vector_).reshape(self.sample_shape_), space, name=name,
                                  provenance={"method": "mean difference", "classes": [str(c) for c in self.classes_],
                                              "samples": self.n_samples_, **(provenance or {})}, layer=layer)
        return d.with_scale_from(X) if X is not None else d


class LinearBoundary:
    """The unit normal of a linear classifier's boundary between two classes (InterFaceGAN).

    Args:
        method: "logistic" (``LogisticRegression``) or "svm" (``LinearSVC``).
        C: inverse regularisation strength, on standardised features. The default is strong: latents have
            thousands of dimensions and a few thousand samples separate almost any two groups, and a
            weakly regularised normal then fits noise (on a planted 256-d factor with 2,000 samples the
            normal's cosine to it is 0.96 at C=0.001, 0.63 at C=1).
    """

    def __init__(self, method: str = "logistic", *, C: float = 0.001, max_iter: int = 5000):
        if method not in ("logistic", "svm"):
            raise ValueError(f"`method` must be 'logistic' or 'svm', got {method!r}.")
        self.method, self.C, self.max_iter = method, C, max_iter

    def fit(self, X, y) -> LinearBoundary:
        from sklearn.linear_model import LogisticRegression
        from sklearn.svm import LinearSVC

        flat = _flat(X)
        positive = _binary(y, flat.shape[0])
        self.sample_shape_ = tuple(X.shape[1:])
        self.classes_ = np.unique(np.asarray(y))
        self.mean_, self.std_ = flat.mean(0), flat.std(0) + 1e-8
        clf = (LogisticRegression(C=self.C, max_iter=self.max_iter) if self.method == "logistic"
               else LinearSVC(C=self.C, max_iter=self.max_iter))
        clf.fit((flat - self.mean_) / self.std_, positive)
        self.classifier_ = clf
        self.vector_ = clf.coef_[0] / self.std_  # the normal in the original (unstandardised) coordinates
        self.score_ = float(clf.score((flat - self.mean_) / self.std_, positive))
        self.n_samples_ = flat.shape[0]
        return self

    def direction(self, space: str, *, name: str = "", X=None, provenance=None, layer: str | None = None) -> Direction:
        d = Direction.from_vector(torch.from_numpy(self.vector_.astype(np.float32)).reshape(self.sample_shape_), space,
                                  name=name, provenance={"method": f"linear boundary ({self.method})", "C": self.C,
                                                         "train_accuracy": self.score_, "samples": self.n_samples_,
                                                         "classes": [str(c) for c in self.classes_],
                                                         **(provenance or {})}, layer=layer)
        return d.with_scale_from(X) if X is not None else d


class RidgeDirection:
    """The coefficient vector of a ridge regression of a continuous attribute (size, x...) on the samples:
    the direction along which the attribute grows, without splitting the samples into two groups.

    Args:
        alpha: the ridge penalty; "auto" is the number of values per sample (on samples of thousands of
            values with a few thousand samples, a weak penalty fits noise as it does for
            :class:`LinearBoundary`).
    """

    def __init__(self, alpha="auto"):
        if alpha != "auto" and not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha > 0):
            raise ValueError(f"`alpha` must be 'auto' or a number > 0, got {alpha!r}.")
        self.alpha = alpha

    def fit(self, X, y) -> RidgeDirection:
        from sklearn.linear_model import Ridge

        flat = _flat(X)
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (flat.shape[0],) or not np.isfinite(y).all():
            raise ValueError(f"`y` must be one finite value per sample ({flat.shape[0]}), got shape {y.shape}.")
        if np.ptp(y) == 0:
            raise ValueError("`y` is constant; there is nothing to regress.")
        self.alpha_ = float(flat.shape[1]) if self.alpha == "auto" else float(self.alpha)
        reg = Ridge(alpha=self.alpha_).fit(flat - flat.mean(0), y)
        self.sample_shape_ = tuple(X.shape[1:])
        self.vector_ = reg.coef_.astype(np.float32)
        self.score_ = float(reg.score(flat - flat.mean(0), y))
        self.n_samples_ = flat.shape[0]
        return self

    def direction(self, space: str, *, name: str = "", X=None, provenance=None, layer: str | None = None) -> Direction:
        d = Direction.from_vector(torch.from_numpy(self.vector_).reshape(self.sample_shape_), space, name=name,
                                  provenance={"method": "ridge regression", "alpha": self.alpha_,
                                              "train_r2": self.score_, "samples": self.n_samples_, **(provenance or {})},
                                  layer=layer)
        return d.with_scale_from(X) if X is not None else d


def text_direction(model, source: str, target: str, *, name: str = "") -> Direction:
    """The prompt-space direction from ``source``'s embedding to ``target``'s; scale = their distance, so
    strength 1 moves exactly from one prompt to the other."""
    a, b = model.embed(source).embeds[0].float().cpu(), model.embed(target).embeds[0].float().cpu()
    delta = b - a
    return Direction.from_vector(delta, "prompt", name=name or f"{source} -> {target}", scale=float(delta.norm()),
                                 provenance={"method": "text pair", "source": source, "target": target,
                                             "model": str(model.name)})


def orthogonalize(direction: Direction, others: Iterable[Direction], *, name: str | None = None) -> Direction:
    """``direction`` with every one of ``others`` projected out (Gram-Schmidt), renormalised: an edit of one
    attribute that leaves the others' coordinates where they were (InterFaceGAN's conditional direction).
    A :class:`Turn` among ``others`` has both of its vectors projected out (its plane is left alone)."""
    if not isinstance(direction, Direction):
        raise TypeError(f"`direction` must be a Direction, got {type(direction).__name__}.")
    others = list(others)
    basis = []
    for other in others:
        vectors = list(other.vectors) if isinstance(other, Turn) else [other.vector]
        if shape_key(other) != shape_key(direction) or vectors[0].numel() != direction.vector.numel():
            raise ValueError(f"cannot orthogonalise a {shape_key(direction)} direction against {other.name!r} "
                             f"({shape_key(other)}, {vectors[0].numel()} values).")
        for vector in vectors:
            v = vector.flatten().double()
            for b in basis:
                v = v - (v @ b) * b
            if float(v.norm()) > 1e-8:
                basis.append(v / v.norm())
    v = direction.vector.flatten().double()
    for b in basis:
        v = v - (v @ b) * b
    if float(v.norm()) < 1e-6:
        raise ValueError(f"{direction.name!r} lies in the span of the others; nothing is left after projecting them out.")
    return Direction.from_vector(v.float().reshape(direction.vector.shape), direction.space,
                                 name=name or f"{direction.name} | ⊥ {', '.join(o.name for o in others)}",
                                 scale=direction.scale, timesteps=direction.timesteps, layer=direction.layer,
                                 provenance={**direction.provenance, "orthogonal_to": [o.name for o in others]})
