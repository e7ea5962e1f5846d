"""The local Jacobian basis of h-space (Park et al. 2023, "Understanding the latent space of diffusion models
through the lens of Riemannian geometry"): unsupervised directions for one image at one denoising step.

At a step of one generation, the UNet maps its input ``x_t`` to h (the bottleneck, or another ``layer``,
see :func:`latentlib.edits.h_hook`). The top singular vectors of that map's Jacobian ``J`` are the
directions along which h changes most for a small change of ``x_t``: the right singular vectors ``v_i``
live in x space, the left ones ``u_i = J v_i / sigma_i`` in h space. They are found without forming ``J``,
by subspace (power) iteration on ``J^T J`` with forward-mode (``jvp``) and reverse-mode (``vjp``) products
from ``torch.func``; attention runs PyTorch's math kernel meanwhile, the one with forward-mode derivatives.

    basis = JacobianBasis(n_components=8).fit(model, "a red circle", seed=3, step=0)
    basis.singular_values_                    # sigma_1 >= sigma_2 >= ...
    model.generate("a red circle", seed=3, edits=[(basis.direction(0), 2.0)])          # an h edit
    model.generate("a red circle", seed=3, edits=[(basis.direction(0, space="xT"), 2.0)])  # step 0 only

A direction's ``scale`` makes its strength comparable with the other finders': for an h direction it is
``sigma_i`` (strength 1 moves h as far as a unit step of ``x_t`` along ``v_i`` would, to first order); for
an xT direction it is 1 (the initial noise has unit standard deviation along every direction).
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from .directions import Direction
from .edits import h_hook

__all__ = ["JacobianBasis"]


class _Captured(Exception):
    """Raised by the pre-hook once the wanted UNet call's inputs are recorded: the generation stops there."""


def _math_attention():
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.MATH)
    except ImportError:  # pragma: no cover - torch < 2.3
        return nullcontext()


class JacobianBasis:
    """Top-``n_components`` singular directions of d h / d x_t for one generation at one step.

    Args:
        n_components: how many directions.
        iters: subspace-iteration rounds at most (each costs ``n_components`` jvps and vjps).
        tol: stop once the subspace moves less than this (1 - the smallest cosine between iterates).
        layer: where h is taken (None: the bottleneck).
        random_state: seeds the starting subspace.

    Fitted attributes: ``singular_values_`` (k,), ``h_components_`` (k, *h_shape), ``x_components_``
    (k, *x_shape), ``timestep_``, ``step_``, ``n_iter_``, ``converged_``.
    """

    def __init__(self, n_components: int = 8, *, iters: int = 30, tol: float = 1e-4, layer: str | None = None,
                 random_state: int = 0):
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
            raise ValueError(f"`n_components` must be an integer >= 1, got {n_components!r}.")
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
            raise ValueError(f"`iters` must be an integer >= 1, got {iters!r}.")
        if not (isinstance(tol, (int, float)) and tol >= 0):
            raise ValueError(f"`tol` must be a number >= 0, got {tol!r}.")
        self.n_components, self.iters, self.tol, self.layer, self.random_state = (
            n_components, iters, float(tol), layer, random_state)

    # -- the map x_t -> h at one step -----------------------------------------------------------------
    def _inputs(self, model, prompt, seed, step, steps, guidance, scheduler, negative_prompt):
        """The UNet's conditional inputs at call ``step`` of the generation (x_t as the UNet sees it, t, text...)."""
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < steps:
            raise ValueError(f"`step` must be a step index in [0, {steps - 1}], got {step!r}.")
        seen: dict = {}
        calls = [0]

        def pre(module, args, kwargs):
            if calls[0] == step:
                seen["args"], seen["kwargs"] = args, dict(kwargs)
                raise _Captured
            calls[0] += 1

        handle = model.unet.register_forward_pre_hook(pre, with_kwargs=True)
        try:
            model.generate(prompt, seed=seed, steps=steps, guidance=guidance, scheduler=scheduler,
                           negative_prompt=negative_prompt, output="latent", progress=False)
        except _Captured:
            pass
        finally:
            handle.remove()
        if "args" not in seen:  # pragma: no cover - a sampler that skipped the step
            raise RuntimeError(f"the UNet was not called {step + 1} times; use a smaller `step`.")
        args, kwargs = seen["args"], seen["kwargs"]
        sample = args[0] if args else kwargs.pop("sample")
        t = args[1] if len(args) > 1 else kwargs.pop("timestep")
        kwargs.pop("return_dict", None)

        def cond(v):  # the conditional half of a CFG batch [uncond, cond]
            if torch.is_tensor(v) and v.ndim > 0 and v.shape[0] == sample.shape[0] and sample.shape[0] == 2:
                return v[1:]
            if isinstance(v, dict):
                return {k: cond(w) for k, w in v.items()}
            return v

        x = sample[-1:].detach().float()
        kwargs = {k: cond(v) for k, v in kwargs.items()}
        return x, t, kwargs

    def fit(self, model, prompt, *, seed: int = 0, step: int = 0, steps: int = 20, guidance: float = 5.0,
            scheduler=None, negative_prompt=None) -> JacobianBasis:
        """Find the basis at denoising ``step`` (0 = the first, where x_t is the initial noise) of the
        generation of ``prompt`` from ``seed``. ``step`` counts UNet calls, which is the step index for
        every sampler that calls the UNet once per step (all but Heun and other second-order ones)."""
        unet = model.unet
        h_hook(unet, lambda h: None, self.layer).remove()  # an unknown layer fails now, naming the choices
        x, t, kwargs = self._inputs(model, prompt, seed, step, steps, guidance, scheduler, negative_prompt)
        dtype = model.dtype
        kwargs = {k: (v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in kwargs.items()}

        def h_of(xx):
            hold = []
            handle = h_hook(unet, lambda h: hold.append(h), self.layer)
            try:
                unet(xx.to(dtype), t, **kwargs, return_dict=False)
            finally:
                handle.remove()
            return hold[0].float()

        n = x.numel()
        if self.n_components > n:
            raise ValueError(f"`n_components` is {self.n_components} but x_t has only {n} values.")
        k = self.n_components
        gen = torch.Generator().manual_seed(self.random_state)
        V = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))[0].T  # (k, n) orthonormal rows
        x_shape = tuple(x.shape[1:])
        with _math_attention():
            h0, vjp_fn = torch.func.vjp(h_of, x)
            h_shape = tuple(h0.shape[1:])

            def jv(v):  # J v
                return torch.func.jvp(h_of, (x,), (v.to(x.dtype).reshape(1, *x_shape),))[1].reshape(-1).double()

            def jtu(u):  # J^T u
                return vjp_fn(u.to(h0.dtype).reshape(1, *h_shape))[0].reshape(-1).double()

            self.converged_, self.n_iter_ = False, 0
            for it in range(self.iters):
                W = torch.stack([jtu(jv(v)) for v in V])  # J^T J V
                new = torch.linalg.qr(W.T)[0].T
                # subspace change: the smallest singular value of V new^T is the cosine of the widest angle
                cos = float(torch.linalg.svdvals(V @ new.T).min())
                V, self.n_iter_ = new, it + 1
                if 1.0 - cos < self.tol:
                    self.converged_ = True
                    break
            U = torch.stack([jv(v) for v in V])  # (k, m) = (J V^T)^T
        # J V^T = P S Q^T  ->  J (V^T Q) = P S: right vectors (Q^T V), left vectors P^T, values S
        P, S, Qt = torch.linalg.svd(U.T, full_matrices=False)
        right = Qt @ V
        left = P.T
        signs = torch.sign(left.gather(1, left.abs().argmax(1, keepdim=True)))  # largest h entry positive
        left, right = left * signs, right * signs
        self.singular_values_ = S.numpy()
        self.h_components_ = left.float().reshape(k, *h_shape)
        self.x_components_ = right.float().reshape(k, *x_shape)
        self.timestep_ = float(t)
        self.step_, self.seed_, self.prompt_ = step, seed, prompt
        self._settings = {"steps": steps, "guidance": guidance, "scheduler": scheduler if isinstance(scheduler, (str, type(None)))
                          else type(scheduler).__name__, "model": str(model.name)}
        return self

    def _check(self):
        if not hasattr(self, "singular_values_"):
            raise RuntimeError("this JacobianBasis is not fitted yet; call fit(model, prompt, ...) first.")

    def direction(self, i: int, *, space: str = "h", name: str | None = None, timesteps=None) -> Direction:
        """Component ``i`` as a :class:`Direction`: in h (at ``layer``; optionally acting only within
        ``timesteps``), or in xT (only for a basis fitted at step 0, where x_t is the initial noise)."""
        self._check()
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self.singular_values_):
            raise ValueError(f"`i` must be a component index in [0, {len(self.singular_values_) - 1}], got {i!r}.")
        prov = {"method": "jacobian (power iteration)", "component": i, "singular_value": float(self.singular_values_[i]),
                "n_components": len(self.singular_values_), "iterations": self.n_iter_, "converged": self.converged_,
                "step": self.step_, "timestep": self.timestep_, "seed": self.seed_, "prompt": self.prompt_,
                "h_layer": self.layer, **self._settings}
        if space == "h":
            return Direction.from_vector(self.h_components_[i], "h", name=name or f"jac{i}",
                                         scale=float(max(self.singular_values_[i], 1e-12)), timesteps=timesteps,
                                         provenance=prov, layer=self.layer)
        if space == "xT":
            if self.step_ != 0:
                raise ValueError(f"an xT direction needs a basis fitted at step 0 (where x_t is the initial noise); "
                                 f"this one was fitted at step {self.step_}. Use space='h'.")
            if timesteps is not None:
                raise ValueError("`timesteps` applies to h directions only.")
            return Direction.from_vector(self.x_components_[i], "xT", name=name or f"jac{i}-xT", scale=1.0,
                                         provenance=prov)
        raise ValueError(f"`space` must be 'h' or 'xT' for a Jacobian direction; got {space!r}.")

    def directions(self, *, space: str = "h", timesteps=None) -> list[Direction]:
        """Every component as a :class:`Direction` (see :meth:`direction`)."""
        self._check()
        return [self.direction(i, space=space, timesteps=timesteps) for i in range(len(self.singular_values_))]

    def __repr__(self) -> str:
        if not hasattr(self, "singular_values_"):
            return f"JacobianBasis(n_components={self.n_components}, layer={self.layer!r})"
        values = ", ".join(f"{v:.3g}" for v in np.asarray(self.singular_values_)[:4])
        more = ", ..." if len(self.singular_values_) > 4 else ""
        return (f"JacobianBasis(step {self.step_}, t={self.timestep_:g}, sigma=[{values}{more}], "
                f"{'converged' if self.converged_ else 'not converged'} after {self.n_iter_} iterations)")
