"""Input validation shared by the public functions. Each check names the argument and the value."""

from __future__ import annotations

import numbers

import torch


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """Raise ValueError when ``tensor`` holds NaN or inf."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        n_nan = int(torch.isnan(tensor).sum())
        n_inf = int(torch.isinf(tensor).sum())
        raise ValueError(
            f"`{name}` contains non-finite values ({n_nan} NaN, {n_inf} inf) in a tensor of shape "
            f"{tuple(tensor.shape)}; all values must be finite."
        )


def check_int(name: str, value, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer >= {minimum}, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_number(name: str, value, *, low: float | None = None, high: float | None = None) -> float:
    """A real number within [low, high] (either bound optional)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number, got {value!r} ({type(value).__name__}).")
    value = float(value)
    accepted = {
        (True, True): f"in [{low}, {high}]",
        (True, False): f">= {low}",
        (False, True): f"<= {high}",
        (False, False): "finite",
    }[(low is not None, high is not None)]
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"`{name}` must be a finite number {accepted}, got {value!r}.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"`{name}` must be {accepted}, got {value!r}.")
    return value


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}; got {value!r}.")
    return value
