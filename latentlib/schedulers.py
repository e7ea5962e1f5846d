"""Samplers by name, built from diffusers' scheduler classes with the model's own scheduler config.

Names follow the A1111/ComfyUI vocabulary people already use:

==================  ==============================================================
``default``         the model's own scheduler class and config
``ddim``            DDIMScheduler
``pndm``            PNDMScheduler (SD 1.x's default)
``euler``           EulerDiscreteScheduler
``euler-karras``    EulerDiscreteScheduler with Karras sigmas
``euler-a``         EulerAncestralDiscreteScheduler (stochastic)
``heun``            HeunDiscreteScheduler (2 model calls per step)
``lms``             LMSDiscreteScheduler
``dpm++2m``         DPMSolverMultistepScheduler, dpmsolver++, order 2
``dpm++2m-karras``  the same with Karras sigmas
``dpm++2m-sde``     DPMSolverMultistepScheduler, sde-dpmsolver++ (stochastic)
``dpm++2m-sde-karras``  the same with Karras sigmas
``unipc``           UniPCMultistepScheduler
``lcm``             LCMScheduler (for LCM-distilled models)
==================  ==============================================================
"""

from __future__ import annotations

import copy
import inspect

import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LCMScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.configuration_utils import FrozenDict
from diffusers.schedulers.scheduling_utils import SchedulerMixin

__all__ = ["SCHEDULERS", "make_scheduler"]

_DPM = {"algorithm_type": "dpmsolver++", "solver_order": 2}
_SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_flow_sigmas")
_LATENT_OFF = ("clip_sample", "thresholding")

#: name -> (diffusers class, config overrides)
SCHEDULERS: dict[str, tuple[type, dict]] = {
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
    "euler": (EulerDiscreteScheduler, {"use_karras_sigmas": False}),
    "euler-karras": (EulerDiscreteScheduler, {"use_karras_sigmas": True}),
    "euler-a": (EulerAncestralDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {"use_karras_sigmas": False}),
    "lms": (LMSDiscreteScheduler, {"use_karras_sigmas": False}),
    "dpm++2m": (DPMSolverMultistepScheduler, {**_DPM, "use_karras_sigmas": False}),
    "dpm++2m-karras": (DPMSolverMultistepScheduler, {**_DPM, "use_karras_sigmas": True}),
    "dpm++2m-sde": (DPMSolverMultistepScheduler, {**_DPM, "algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": False}),
    "dpm++2m-sde-karras": (
        DPMSolverMultistepScheduler,
        {**_DPM, "algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    "unipc": (UniPCMultistepScheduler, {}),
    "lcm": (LCMScheduler, {}),
}


#: Schedulers whose first ``step`` (or ``scale_model_input``) finds the start with ``_init_step_index(timestep)``
#: when the step index is unset (diffusers 0.42.1; a test reads their sources): the generation loop makes
#: that call before the first UNet call instead (its device-to-host read then finds the GPU idle).
EARLY_INDEX: tuple[type, ...] = (DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler,
                                 HeunDiscreteScheduler, LCMScheduler, LMSDiscreteScheduler, UniPCMultistepScheduler)


def make_scheduler(name: str | SchedulerMixin | None, base: SchedulerMixin) -> SchedulerMixin:
    """A fresh scheduler (schedulers keep per-run state, so every generation gets its own).

    Args:
        name: a key of :data:`SCHEDULERS`, ``"default"``/None for ``base``'s own class, or a diffusers
            scheduler instance (a fresh copy of it is made).
        base: the model's scheduler; its config (betas, timestep spacing, prediction type...) is kept.
            Where it does not set ``clip_sample`` or ``thresholding``, they are off (diffusers' DDIM
            default clips x0 to [-1, 1], which is meant for pixel-space models).
    """
    if name is None or name == "default":
        return _fresh(base, "default", lambda: type(base).from_config(base.config))
    if isinstance(name, SchedulerMixin):
        return type(name).from_config(name.config)
    if not isinstance(name, str) or name not in SCHEDULERS:
        raise ValueError(
            f"`scheduler` {name!r} is not known; use one of: default, {', '.join(SCHEDULERS)}, "
            f"or pass a diffusers scheduler instance."
        )
    cls, overrides = SCHEDULERS[name]
    # The name fixes the sigma schedule: options of the model's own sampler (e.g. Karras sigmas) do not leak in.
    accepted = inspect.signature(cls.__init__).parameters
    settings = {flag: False for flag in _SIGMA_FLAGS if flag in accepted}
    # diffusers' DDIM/DDPM default to clipping the predicted x0 to [-1, 1], a pixel-space setting that
    # wrecks latents; Stable Diffusion's configs turn it off. A config that does not say (a DPM-solver
    # config, say) gets it off too; one that sets it keeps its value.
    settings.update({key: False for key in _LATENT_OFF if key in accepted and key not in base.config})
    settings.update(overrides)
    return _fresh(base, name, lambda: cls.from_config(base.config, **settings))


def _fresh(base: SchedulerMixin, name: str, make) -> SchedulerMixin:
    """A copy of a pristine scheduler kept on ``base`` per name: ``from_config`` takes about 1 ms of Python,
    this copy about 0.05 ms, which a 10 ms live frame notices. A changed ``base.config`` makes a new one."""
    templates = base.__dict__.setdefault("_latentlib_templates", {})
    entry = templates.get(name)
    if entry is None or entry[0] is not base.config:  # the config object itself, not its id (ids are reused)
        entry = templates[name] = (base.config, make())
    template = entry[1]
    # A faster deepcopy: the template's tensors are cloned directly (Tensor.__deepcopy__ goes through storages,
    # ~20 us a tensor) and its config gets a shallow copy. Schedulers set config attributes in place (DPM-Solver's
    # set_timesteps(mu=...) sets config.flow_shift; FrozenDict does not stop it), so it is not shared; its values
    # are numbers, strings and lists that nothing changes in place.
    memo = {}
    for value in vars(template).values():
        if isinstance(value, torch.Tensor) and not value.requires_grad:
            memo[id(value)] = value.clone()
        elif isinstance(value, FrozenDict):
            memo[id(value)] = copy.copy(value)
    return copy.deepcopy(template, memo)
