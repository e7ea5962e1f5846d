"""latentlib: explore and control the latent spaces of latent diffusion models.

Pure compute, no UI (the interactive apps live in the ``lab`` package).

Example:
    >>> import latentlib as ll
    >>> model = ll.load("path/to/diffusers/folder")          # or a hub id; CPU float32 by default
    >>> z = model.encode(images)                              # (B, 4, H/8, W/8) scaled latents
    >>> x = model.noise(seed=0, n=2)                          # item i from seed i
    >>> e = model.embed("a red circle") + 0.5 * model.embed("blue")
    >>> frames = model.generate(prompt=e, latents=ll.slerp(x[:1], x[1:], [0, 0.5, 1])[:, 0], steps=20)
"""

from .collect import Samples, collect
from .directions import (
    Direction,
    DirectionBank,
    LinearBoundary,
    MeanDifference,
    PCADirections,
    RidgeDirection,
    Turn,
    orthogonalize,
    text_direction,
)
from . import masks
from .interpolate import lerp, slerp
from .jacobian import JacobianBasis
from .maps import PCAMap, SampleMap, UMAPMap
from .report import ReportCard, report_card
from .model import DEFAULT_MODEL, Model, ModelNotFoundError, load
from .prompts import PromptEmbedding, mix
from .sampling import Interrupted, Step
from .schedulers import SCHEDULERS

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "Direction",
    "DirectionBank",
    "Interrupted",
    "JacobianBasis",
    "LinearBoundary",
    "MeanDifference",
    "PCADirections",
    "RidgeDirection",
    "ReportCard",
    "Turn",
    "Samples",
    "PCAMap",
    "SampleMap",
    "UMAPMap",
    "collect",
    "orthogonalize",
    "report_card",
    "text_direction",
    "Model",
    "ModelNotFoundError",
    "PromptEmbedding",
    "SCHEDULERS",
    "Step",
    "__version__",
    "lerp",
    "load",
    "mix",
    "slerp",
]
