"""Inpainting masks: pure functions on ``(H, W)`` float tensors in [0, 1], where 1 (white) means *repaint*.

A mask is never binarised behind your back: :func:`grow`, :func:`erode` and :func:`feather` keep soft
values soft (grey-level dilation and erosion, a Gaussian), :func:`to_latent` averages areas, and only
:func:`threshold` makes a mask hard, when asked. Operations that would leave nothing to repaint raise.

    >>> m = masks.to_mask(pil_mask)                  # PIL "L"/"RGB"/"RGBA", uint8/bool/float array, tensor
    >>> m = masks.feather(masks.grow(m, 4), 6)       # 4 px bigger, 6 px soft edge (exactly 0 beyond it)
    >>> lat = masks.to_latent(m, model.vae_scale_factor)   # (H/8, W/8), area average

Distances are Euclidean: ``grow(m, r)`` reaches every pixel within ``r`` of the mask (a disk), and a
one-pixel mask grown by ``r`` is the disk of radius ``r``.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

__all__ = ["box", "erode", "feather", "grow", "intersection", "invert", "threshold", "to_latent", "to_mask", "union"]


def to_mask(mask, *, size: tuple[int, int] | None = None, name: str = "mask") -> torch.Tensor:
    """Any mask as an ``(H, W)`` float32 tensor in [0, 1] (1 = repaint).

    Accepts a PIL image (mode "1", "L", "RGB" or "RGBA": its luminance; for "RGBA", its alpha where the
    colour is all black, as painted layers are), a ``bool`` / ``uint8`` (0-255) / float (0-1) array or
    tensor of shape ``(H, W)``, ``(1, H, W)`` or ``(H, W, 1)``. ``size`` (height, width), when given, must match.
    """
    import PIL.Image

    if isinstance(mask, PIL.Image.Image):
        if mask.mode in ("RGBA", "LA", "PA"):
            # a painted layer: black paint counts by its alpha; coloured paint by luminance times alpha
            alpha = np.asarray(mask.getchannel("A"), np.float32) / 255.0
            luminance = np.asarray(mask.convert("L"), np.float32) / 255.0
            values = torch.from_numpy(alpha if not luminance.any() else luminance * alpha)
        elif mask.mode in ("1", "L", "P", "RGB"):
            values = torch.from_numpy(np.asarray(mask.convert("L"), np.float32) / 255.0)
        elif mask.mode == "F":
            return to_mask(np.asarray(mask, np.float32), size=size, name=name)  # floats: checked to lie in [0, 1]
        else:
            raise TypeError(f"`{name}` is a PIL image of mode {mask.mode!r}; give mode 1, L, RGB, RGBA, LA or F (a "
                            f"float mask in [0, 1]), e.g. image.convert('L') after scaling it to 0-255.")
    elif isinstance(mask, (np.ndarray, torch.Tensor)):
        t = torch.as_tensor(np.asarray(mask) if isinstance(mask, np.ndarray) else mask).detach().cpu()
        if t.ndim == 3 and 1 in (t.shape[0], t.shape[-1]):
            t = t.reshape(t.shape[1:] if t.shape[0] == 1 else t.shape[:2])
        if t.ndim != 2:
            raise ValueError(f"`{name}` must be (H, W), (1, H, W) or (H, W, 1); got shape {tuple(t.shape)}.")
        if t.dtype == torch.bool:
            values = t.float()
        elif t.dtype == torch.uint8:
            values = t.float() / 255.0
        elif t.is_floating_point():
            values = t.float()
            if not bool(torch.isfinite(values).all()):
                raise ValueError(f"`{name}` contains NaN or inf.")
            low, high = float(values.min()), float(values.max())
            if low < 0 or high > 1:
                raise ValueError(f"`{name}` is a float mask with values in [{low:g}, {high:g}]; float masks must lie in "
                                 f"[0, 1] (uint8 masks are read as 0-255).")
        else:
            raise TypeError(f"`{name}` has dtype {t.dtype}; give bool, uint8 (0-255) or float (0-1).")
    else:
        raise TypeError(f"`{name}` must be a PIL image, a numpy array or a torch tensor; got {type(mask).__name__}.")
    if size is not None and tuple(values.shape) != tuple(size):
        raise ValueError(f"`{name}` is {values.shape[1]}x{values.shape[0]} (width x height); the image is "
                         f"{size[1]}x{size[0]}. Give a mask of the image's size.")
    return values.contiguous()


def _pixels(name: str, px) -> float:
    if isinstance(px, bool) or not isinstance(px, numbers.Real):
        raise TypeError(f"`{name}` must be a number of pixels, got {type(px).__name__} {px!r}.")
    if not 0 <= px < 10_000:
        raise ValueError(f"`{name}` must be a number of pixels >= 0, got {px!r}.")
    return float(px)


def _disk(radius: float) -> np.ndarray:
    r = int(np.floor(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (xx**2 + yy**2) <= radius**2 + 1e-9


def _check_not_empty(result: torch.Tensor, before: torch.Tensor, what: str) -> torch.Tensor:
    if bool((before > 0).any()) and not bool((result > 0).any()):
        raise ValueError(f"{what} leaves nothing to repaint (the mask would be empty); use a smaller value.")
    return result


def grow(mask, px: float, *, name: str = "px") -> torch.Tensor:
    """Dilate by ``px`` pixels (grey-level: each pixel takes the largest value within distance ``px``)."""
    from scipy import ndimage

    m, px = to_mask(mask), _pixels(name, px)
    if px == 0:
        return m.clone()
    return torch.from_numpy(ndimage.grey_dilation(m.numpy(), footprint=_disk(px), mode="constant", cval=0.0))


def erode(mask, px: float, *, name: str = "px") -> torch.Tensor:
    """Erode by ``px`` pixels (grey-level: each pixel takes the smallest value within distance ``px``; the
    image's border extends outwards, so a mask that touches the edge is not eroded from it). Raises if nothing
    would be left to repaint."""
    from scipy import ndimage

    m, px = to_mask(mask), _pixels(name, px)
    if px == 0:
        return m.clone()
    out = torch.from_numpy(ndimage.grey_erosion(m.numpy(), footprint=_disk(px), mode="nearest"))
    return _check_not_empty(out, m, f"eroding by {px:g} px")


def feather(mask, px: float, *, name: str = "px") -> torch.Tensor:
    """Soften the edge over ``px`` pixels: a Gaussian with sigma ``px / 2`` cut off at ``px``, so the mask
    reaches at most ``px`` beyond where it was (and the soft edge spans about ``px`` on each side).

    A separable Gaussian cut at ``px`` per axis reaches a little further along the diagonals (up to
    ``px * sqrt(2)``, with values below 0.01 there); those are set to 0, so the feathered mask is exactly 0
    outside ``grow(mask, px)``, where paste-back must leave the image untouched."""
    from scipy import ndimage

    m, px = to_mask(mask), _pixels(name, px)
    if px == 0:
        return m.clone()
    # the border extends outwards ("nearest"), so a mask that reaches the image's edge stays whole there
    out = ndimage.gaussian_filter(m.numpy().astype(np.float64), sigma=px / 2, truncate=2.0, mode="nearest")
    reach = ndimage.grey_dilation((m.numpy() > 0).astype(np.float32), footprint=_disk(px), mode="constant") > 0
    return torch.from_numpy((np.clip(out, 0, 1) * reach).astype(np.float32))


def threshold(mask, t: float = 0.5) -> torch.Tensor:
    """Binarise: 1 where the mask is >= ``t``, else 0 (the only operation that makes a mask hard)."""
    m = to_mask(mask)
    if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 < t <= 1:
        raise ValueError(f"`t` must be a number in (0, 1], got {t!r}.")
    return _check_not_empty((m >= t).float(), m, f"thresholding at {t:g}")


def invert(mask) -> torch.Tensor:
    """1 - mask: repaint what was kept, keep what was repainted. Raises if that leaves nothing to repaint."""
    m = to_mask(mask)
    out = 1.0 - m
    if not bool((out > 0).any()):
        raise ValueError("inverting an all-white mask leaves nothing to repaint.")
    return out


def _pair(a, b) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = to_mask(a, name="a"), to_mask(b, name="b")
    if a.shape != b.shape:
        raise ValueError(f"masks `a` and `b` have different sizes: {tuple(a.shape)} and {tuple(b.shape)} (H, W).")
    return a, b


def union(a, b) -> torch.Tensor:
    """Repaint where either mask says so (the larger value)."""
    a, b = _pair(a, b)
    return torch.maximum(a, b)


def intersection(a, b) -> torch.Tensor:
    """Repaint only where both masks say so (the smaller value)."""
    a, b = _pair(a, b)
    return _check_not_empty(torch.minimum(a, b), torch.maximum(a, b), "the intersection of masks that do not overlap")


def to_latent(mask, factor: int = 8, *, reduce: str = "mean") -> torch.Tensor:
    """The mask at latent resolution ``(H / factor, W / factor)``: each latent cell gets the mean of its
    ``factor x factor`` pixels (``reduce="mean"``: soft masks stay soft, a half-covered cell is 0.5), or their
    largest value (``reduce="max"``: every cell the mask touches is repainted, as much as its most
    repainted pixel; what inpainting's latent blend uses, with paste-back restoring the pixels outside)."""
    if reduce not in ("mean", "max"):
        raise ValueError(f"`reduce` must be 'mean' or 'max', got {reduce!r}.")
    m = to_mask(mask)
    if isinstance(factor, bool) or not isinstance(factor, numbers.Integral) or factor < 1:
        raise ValueError(f"`factor` must be an integer >= 1, got {factor!r}.")
    h, w = m.shape
    if h % factor or w % factor:
        raise ValueError(f"the mask is {w}x{h}; both sides must be divisible by the VAE's factor {factor}.")
    pool = torch.nn.functional.avg_pool2d if reduce == "mean" else torch.nn.functional.max_pool2d
    return pool(m[None, None], factor)[0, 0]


def box(size: tuple[int, int], left: int, top: int, right: int, bottom: int) -> torch.Tensor:
    """A hard rectangular mask of ``size`` (height, width): 1 on columns [left, right) and rows [top, bottom)."""
    h, w = size
    if not (0 <= left < right <= w and 0 <= top < bottom <= h):
        raise ValueError(f"the box ({left}, {top}, {right}, {bottom}) must lie inside the {w}x{h} image with "
                         f"left < right and top < bottom.")
    m = torch.zeros(h, w)
    m[top:bottom, left:right] = 1.0
    return m
