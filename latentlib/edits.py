"""Edits applied during generation: ``(direction, strength)`` pairs, each in its own space.

A *direction* is anything with

- ``space``: ``"xT"`` (initial noise), ``"z0"`` (VAE latents of the start image, image-to-image),
  ``"prompt"`` (token embeddings) or ``"h"`` (the UNet's bottleneck: its mid block's output, or, in a UNet
  without a mid block such as the default model's, the activation entering its up path);
- ``vector``: a tensor with the shape of one sample of that space (``(C, h, w)`` for xT/z0,
  ``(L, D)`` or ``(D,)`` for prompt, the mid-block's ``(C', h', w')`` for h), or that many values flat;
- optionally ``scale`` (default 1): the samples' standard deviation along the direction, so that
  ``strength`` is in those units (the move is ``strength * scale * vector``);
- optionally ``timesteps``: ``(high, low)``, the scheduler timesteps between which an h edit acts
  (inclusive; default: every step);
- optionally ``layer`` (h only): where in the UNet h is taken. ``None`` or ``"bottleneck"`` is the
  bottleneck above; any other value names a UNet module (``"up_blocks.0"``, ``"mid_block"``...) whose
  output is h (see :func:`h_hook`).

The directions issue provides a ``Direction`` class with provenance that fits this; any object with
these attributes works (e.g. ``types.SimpleNamespace``).

A *turn* (:class:`latentlib.directions.Turn`, for a circular factor) takes the place of a direction: it has
``space``, ``timesteps`` and ``layer`` as above, ``vectors`` (two, spanning its plane) instead of ``vector``,
and ``apply(X, strength)``, which turns each sample of ``X`` (N, ...) in that plane. It is applied where
a direction's move would be added: once for xT, z0 and prompt, at every step of its window for h.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from contextlib import contextmanager

import torch

__all__ = ["SPACES", "apply_vector_edits", "bottleneck_hook", "check_edits", "h_hook", "h_layers",
           "h_space_edits"]

SPACES = ("xT", "z0", "prompt", "h")


class _Turning:
    """A turn's edit at one strength: ``apply(X)`` turns every sample of X (N, ...)."""

    def __init__(self, turn, strength: float):
        self.turn, self.strength = turn, strength

    def numel(self) -> int:
        return self.turn.vectors[0].numel()

    def apply(self, X: torch.Tensor) -> torch.Tensor:
        return self.turn.apply(X, self.strength)


def check_edits(edits) -> list[tuple[object, str, torch.Tensor | _Turning, tuple | None]]:
    """Validate ``edits``; return ``(direction, space, delta, window)`` with ``delta = strength * scale * vector``
    (for a turn, ``delta`` is an object whose ``apply(X)`` makes its move)."""
    if isinstance(edits, (str, bytes)) or not isinstance(edits, Sequence):
        raise TypeError(f"`edits` must be a list of (direction, strength) pairs, got {type(edits).__name__}.")
    out = []
    for k, pair in enumerate(edits):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(f"`edits[{k}]` must be a (direction, strength) pair, got {pair!r}.")
        direction, strength = pair
        space, vector = getattr(direction, "space", None), getattr(direction, "vector", None)
        if space not in SPACES:
            raise ValueError(f"`edits[{k}]` has space {space!r}; accepted spaces are {', '.join(SPACES)}.")
        turning = vector is None and callable(getattr(direction, "apply", None))
        if turning:
            vector = getattr(direction, "vectors", None)
        if not isinstance(vector, torch.Tensor) or not vector.is_floating_point():
            raise TypeError(f"`edits[{k}]`'s direction needs a float tensor `vector`, got {type(vector).__name__}.")
        if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or strength != strength \
                or abs(strength) == float("inf"):
            raise ValueError(f"`edits[{k}]` has strength {strength!r}; it must be a finite number.")
        scale = getattr(direction, "scale", 1.0)
        if scale is None:
            scale = 1.0
        window = getattr(direction, "timesteps", None)
        if window is not None and (len(window) != 2 or window[0] < window[1]):
            raise ValueError(f"`edits[{k}]` has timesteps {window!r}; expected (high, low) with high >= low.")
        if not bool(torch.isfinite(vector).all()):
            raise ValueError(f"`edits[{k}]`'s vector contains NaN or inf.")
        layer = getattr(direction, "layer", None)
        if layer is not None and (space != "h" or not isinstance(layer, str) or not layer):
            raise ValueError(f"`edits[{k}]` has layer {layer!r}; a layer is a UNet module name, for h edits only "
                             f"(this edit is in {space}).")
        if turning:
            out.append((direction, space, _Turning(direction, float(strength)), window))
        else:
            out.append((direction, space, float(strength) * float(scale) * vector.detach(), window))
    return out


def _shaped(delta, shape: tuple[int, ...], k: int, space: str):
    """``delta`` reshaped to one sample's ``shape`` (a turn is returned as it is, once its size is checked)."""
    numel = 1
    for s in shape:
        numel *= s
    turning = isinstance(delta, _Turning)
    if delta.numel() != numel:
        what = f"vectors have {delta.numel()} values" if turning else \
            f"has {delta.numel()} values (shape {tuple(delta.shape)})"
        raise ValueError(f"edit {k} in space {space!r} {what}; this model's {space} samples have shape {shape} "
                         f"({numel} values).")
    return delta if turning else delta.reshape(shape)


def _move(tensor: torch.Tensor, delta) -> torch.Tensor:
    """``tensor`` (B, ...) moved by one edit: a turn's ``apply``, or ``delta`` added to every sample."""
    if isinstance(delta, _Turning):
        return delta.apply(tensor)
    return tensor + delta.to(tensor.device, tensor.dtype)


def apply_vector_edits(checked, space: str, tensor: torch.Tensor) -> torch.Tensor:
    """Make every edit of ``space`` on ``tensor`` (B, ...): add a direction's move to each sample (one
    sample's delta broadcast over the batch), or turn each sample (a turn)."""
    for k, (_, edit_space, delta, _) in enumerate(checked):
        if edit_space != space:
            continue
        sample_shape = tuple(tensor.shape[1:])
        if space == "prompt" and delta.numel() == tensor.shape[-1] and (isinstance(delta, _Turning) or delta.ndim == 1):
            tensor = _move(tensor, delta)  # (D,): the same move on every token (a turn turns each token)
        else:
            tensor = _move(tensor, _shaped(delta, sample_shape, k, space))
    return tensor


def bottleneck_hook(unet, fn):
    """Register ``fn(h) -> h or None`` on the UNet's h space; returns the hook handle (``.remove()`` it).

    h is the mid block's output; a UNet without a mid block (``mid_block_type=None``, as the default
    model) has its bottleneck where the up path starts, so there ``fn`` sees (and may replace) the
    ``hidden_states`` going into ``up_blocks[0]``.
    """
    if unet.mid_block is not None:
        def after_mid(module, args, output):
            return fn(output)

        return unet.mid_block.register_forward_hook(after_mid)

    def before_up(module, args, kwargs):
        if "hidden_states" in kwargs:
            new = fn(kwargs["hidden_states"])
            return None if new is None else (args, {**kwargs, "hidden_states": new})
        new = fn(args[0])
        return None if new is None else ((new, *args[1:]), kwargs)

    return unet.up_blocks[0].register_forward_pre_hook(before_up, with_kwargs=True)


BOTTLENECK = "bottleneck"


def h_layers(unet) -> list[str]:
    """The values ``layer`` takes for this UNet: "bottleneck", then its blocks in the order they run."""
    names = [f"down_blocks.{i}" for i in range(len(unet.down_blocks))]
    names += ["mid_block"] if unet.mid_block is not None else []
    names += [f"up_blocks.{i}" for i in range(len(unet.up_blocks))]
    return [BOTTLENECK, *names]


def _layer_name(layer) -> str:
    return BOTTLENECK if layer is None else layer


def h_hook(unet, fn, layer: str | None = None):
    """Register ``fn(h) -> h or None`` on h at ``layer``; returns the hook handle (``.remove()`` it).

    ``layer`` None or "bottleneck": :func:`bottleneck_hook`. Otherwise the name of a UNet module (a key
    of ``unet.named_modules()``, e.g. "up_blocks.0": usually one of :func:`h_layers`); h is its output
    (the first element when it returns a tuple, as down blocks do), and ``fn`` may replace it. A down
    block's skip connections are the rest of that tuple: an edit there moves the path down, not the skips.
    "mid_block" is the same tensor as "bottleneck" in a UNet that has one (listed for completeness).
    """
    name = _layer_name(layer)
    if not isinstance(name, str):
        raise TypeError(f"`layer` must be a string naming a UNet module, got {type(layer).__name__}.")
    if name == BOTTLENECK:
        return bottleneck_hook(unet, fn)
    module = dict(unet.named_modules()).get(name) if name else None
    if module is None:
        raise ValueError(f"`layer` {layer!r} is not a module of this UNet; use one of {', '.join(h_layers(unet))} "
                         f"(or any name from unet.named_modules()).")

    def after(module, args, output):
        if isinstance(output, tuple):
            new = fn(output[0])
            return None if new is None else (new, *output[1:])
        return fn(output)

    return module.register_forward_hook(after)


@contextmanager
def h_space_edits(unet, checked, current_timestep):
    """Hooks (:func:`h_hook`, one per layer) that add the h-space edits while the timestep is in each window.

    ``current_timestep()`` returns the timestep being denoised (the loop updates it).
    """
    by_layer: dict[str, list] = {}
    for k, (direction, space, delta, window) in enumerate(checked):
        if space == "h":
            by_layer.setdefault(_layer_name(getattr(direction, "layer", None)), []).append((k, delta, window))
    if not by_layer:
        yield
        return

    def adder(edits, where):
        def add(h):
            t = float(current_timestep())
            for k, delta, window in edits:
                if window is None or window[1] <= t <= window[0]:
                    h = _move(h, _shaped(delta, tuple(h.shape[1:]), k, where))
            return h

        return add

    handles = []
    try:
        for layer, edits in by_layer.items():
            handles.append(h_hook(unet, adder(edits, "h" if layer == BOTTLENECK else f"h@{layer}"), layer))
        yield
    finally:
        for handle in handles:
            handle.remove()
