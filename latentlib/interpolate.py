"""Interpolation between latents, noises and embeddings: ``slerp`` and ``lerp``.

Both take two arrays of the same shape and a position ``t``. A float ``t`` gives
one result of the inputs' shape; a 1-D sequence of ``T`` positions gives the
results stacked on a new first axis, shape ``(T, *a.shape)``.

Example:
    >>> import torch, latentlib as ll
    >>> a, b = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    >>> ll.slerp(a, b, [0.0, 0.5, 1.0]).shape
    torch.Size([3, 1, 4, 8, 8])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["slerp", "lerp"]

# Below this |sin(theta)| the two vectors are treated as parallel or anti-parallel.
_SIN_EPS = 1e-6


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    raise TypeError(f"`{name}` must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}.")


def _positions(t) -> tuple[torch.Tensor, bool]:
    """Return (positions as float64 1-D tensor, whether t was a scalar)."""
    if isinstance(t, bool):
        raise TypeError(f"`t` must be a float or a 1-D sequence of floats, got {t!r}.")
    if isinstance(t, numbers.Real):
        values, scalar = torch.tensor([float(t)], dtype=torch.float64), True
    elif isinstance(t, (torch.Tensor, np.ndarray)) and t.ndim == 0:
        values, scalar = torch.as_tensor(t, dtype=torch.float64).reshape(1), True
    elif isinstance(t, (Sequence, torch.Tensor, np.ndarray)) and not isinstance(t, (str, bytes)):
        try:
            values = torch.as_tensor(np.asarray(t, dtype=np.float64) if not isinstance(t, torch.Tensor) else t)
        except (TypeError, ValueError) as error:
            raise TypeError(f"`t` must be a float or a 1-D sequence of floats, got {t!r}.") from error
        values, scalar = values.to(torch.float64), False
        if values.ndim != 1:
            raise ValueError(f"`t` must be a float or a 1-D sequence, got shape {tuple(values.shape)}.")
    else:
        raise TypeError(f"`t` must be a float or a 1-D sequence of floats, got {type(t).__name__}.")
    if not torch.isfinite(values).all():
        raise ValueError(f"`t` must be finite, got {t!r}.")
    return values, scalar


def _vector_dims(ndim: int, dim) -> tuple[int, ...]:
    if dim is None:
        return (0,) if ndim == 1 else tuple(range(1, ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -ndim <= d < ndim:
            raise ValueError(f"`dim` {dim!r} is out of range for inputs with {ndim} dimensions.")
        out.append(d % ndim)
    return tuple(sorted(set(out)))


def _check_pair(a, b):
    a, b = _as_tensor(a, "a"), _as_tensor(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"`a` and `b` must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}.")
    if not a.is_floating_point() or not b.is_floating_point():
        raise TypeError(f"`a` and `b` must be floating point, got {a.dtype} and {b.dtype}.")
    if a.numel() == 0:
        raise ValueError("`a` and `b` are empty.")
    return a, b


def _finish(results: list[torch.Tensor], scalar: bool, like):
    out = results[0] if scalar else torch.stack(results)
    return out.numpy() if isinstance(like, np.ndarray) else out


def lerp(a, b, t, *, dim=None):
    """Linear interpolation ``a + t * (b - a)``.

    Args:
        a, b: tensors or arrays of the same shape.
        t: a float, or a 1-D sequence of ``T`` floats.
        dim: unused (accepted so ``lerp`` and ``slerp`` are interchangeable).

    Returns:
        Same type as ``a``; shape ``a.shape`` for a float ``t``, ``(T, *a.shape)`` otherwise.
    """
    del dim
    ta, tb = _check_pair(a, b)
    positions, scalar = _positions(t)
    results = [torch.lerp(ta, tb, float(p)) for p in positions]
    return _finish(results, scalar, a)


def slerp(a, b, t, *, dim=None):
    """Spherical linear interpolation, batched over pairs.

    Each pair of vectors ``u`` (from ``a``) and ``v`` (from ``b``) is interpolated
    along the great circle through them:
    ``sin((1-t) theta) / sin(theta) * u + sin(t theta) / sin(theta) * v``,
    with ``theta`` the angle between them. For equal-norm inputs the norm is kept
    at every ``t``. Nearly parallel pairs fall back to ``lerp``; exactly or nearly
    anti-parallel pairs (where the great circle is not unique) rotate through a
    fixed orthogonal direction so the result is finite and deterministic.

    Args:
        a, b: tensors or arrays of the same shape, e.g. noises ``(B, C, h, w)``.
        t: a float, or a 1-D sequence of ``T`` floats (values outside [0, 1] extrapolate).
        dim: the dimension(s) that make up one vector. Default: all but the first
            when the inputs have 2+ dimensions (so the first is the batch of pairs),
            the only one for 1-D inputs. Use ``dim=-1`` for per-token slerp of
            ``(B, L, D)`` prompt embeddings.

    Returns:
        Same type as ``a``; shape ``a.shape`` for a float ``t``, ``(T, *a.shape)`` otherwise.
    """
    ta, tb = _check_pair(a, b)
    positions, scalar = _positions(t)
    dims = _vector_dims(ta.ndim, dim)

    # Angles in float64 (cheap: one number per pair; float32 on MPS, which has no float64);
    # the blend itself in the input precision.
    work = torch.float32 if ta.device.type == "mps" else torch.float64
    a64, b64 = ta.to(work), tb.to(work)
    na = torch.linalg.vector_norm(a64, dim=dims, keepdim=True)
    nb = torch.linalg.vector_norm(b64, dim=dims, keepdim=True)
    if bool((na == 0).any()) or bool((nb == 0).any()):
        raise ValueError("`a` or `b` contains a zero vector; slerp needs a direction for every pair (use lerp).")
    cos = ((a64 / na) * (b64 / nb)).sum(dim=dims, keepdim=True).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    sin = torch.sin(theta)
    parallel = (sin < _SIN_EPS) & (cos > 0)
    antiparallel = (sin < _SIN_EPS) & (cos < 0)

    ortho = None
    if bool(antiparallel.any()):
        if math.prod(ta.shape[d] for d in dims) == 1:
            raise ValueError("`a` and `b` hold opposite 1-element vectors: no path between them keeps the norm "
                             "(use lerp).")
        ortho = _orthogonal_unit(a64 / na, dims)

    results = []
    for p in positions.tolist():
        safe_sin = torch.where(sin < _SIN_EPS, torch.ones_like(sin), sin)
        wa = torch.sin((1.0 - p) * theta) / safe_sin
        wb = torch.sin(p * theta) / safe_sin
        wa = torch.where(parallel, torch.full_like(wa, 1.0 - p), wa)
        wb = torch.where(parallel, torch.full_like(wb, p), wb)
        out = wa.to(ta.dtype) * ta + wb.to(ta.dtype) * tb
        if ortho is not None:
            # Half a turn from a through `ortho` to -a, with the norm moving linearly from |a| to |b|.
            radius = (1.0 - p) * na + p * nb
            turn = (math.cos(math.pi * p) * (a64 / na) + math.sin(math.pi * p) * ortho) * radius
            if p == 0.0:
                turn = a64
            elif p == 1.0:
                turn = b64
            out = torch.where(antiparallel, turn.to(ta.dtype), out)
        results.append(out)
    return _finish(results, scalar, a)


def _orthogonal_unit(u: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """A unit vector orthogonal to each unit vector ``u`` (over ``dims``), chosen deterministically."""
    # Gram-Schmidt against the axis where |u| is smallest.
    flat_first = u.movedim(dims, tuple(range(u.ndim - len(dims), u.ndim)))
    lead = flat_first.shape[: u.ndim - len(dims)]
    flat = flat_first.reshape(*lead, -1)
    axis = flat.abs().argmin(dim=-1, keepdim=True)
    e = torch.zeros_like(flat).scatter_(-1, axis, 1.0)
    e = e - (e * flat).sum(-1, keepdim=True) * flat
    e = e / torch.linalg.vector_norm(e, dim=-1, keepdim=True)
    e = e.reshape(flat_first.shape).movedim(tuple(range(u.ndim - len(dims), u.ndim)), dims)
    return e
