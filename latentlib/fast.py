"""The fast path: opt-in speed-ups for live generation, automatic on CUDA, each falling back cleanly elsewhere.

On a GPU a diffusion step of a real-sized model is bound by Python and kernel launches, not by
arithmetic (DESIGN.md: SD 1.5's UNet step costs the same at batch 1 and 2). The levers, in the order
:func:`accelerate` applies them:

=================  =====================================================  ===================  ===========
flag               what it does                                           ``"auto"`` on CUDA   elsewhere
=================  =====================================================  ===================  ===========
``dtype``          run the networks in float16/bfloat16                   float16              unchanged
``sdpa``           PyTorch's fused scaled-dot-product attention           on                   on
``channels_last``  NHWC memory layout for the convolutions                on with ``compile``  off
``compile``        ``torch.compile`` of the UNet and the decoder          on                   off
``cuda_graphs``    replay a captured CUDA graph per fixed input shape     on                   off (CUDA only)
``fuse_qkv``       one matmul for attention's q, k, v (diffusers' fusion) on                   off
``cudnn_benchmark`` let cuDNN time its convolution algorithms once        on                   off (CUDA only)
``cache``          reuse prompt embeddings, seed noise, start images'     on                   on
                   latents across frames
``autotune``       tune the compiled kernels (see below)                  "off"                "off"
``attention``      which SDPA kernel the fast UNet tries first            "auto" (PyTorch's)   "auto"
=================  =====================================================  ===================  ===========

``autotune`` applies with ``compile``: "coordinate-descent" lets Inductor search each generated kernel's
launch configuration (its ``coordinate_descent_tuning``), "max-autotune" also times matrix-product and
convolution templates against the library kernels (``torch.compile(mode="max-autotune-no-cudagraphs")``;
CUDA graphs stay latentlib's own). Both lengthen the first, cold compile ("max-autotune" far more, as it
benchmarks candidate kernels); the compile cache keeps the result for later sessions. Off by default: the
gain on a GPU is not measured yet (``bench/bench_fast.py --autotune``).

``static_shapes`` (with ``compile``) compiles every batch size on its own (``torch.compile(dynamic=False)``).
By default a second batch size recompiles once with a symbolic batch that later sizes share (fewer cold
compiles); static graphs may run faster for each size, at the price of a full compile per new size. Off by
default until measured on a GPU (``bench/bench_unet_tuning.py``).

``attention`` ("auto", "cudnn", "flash", "efficient" or "math") puts one of PyTorch's scaled-dot-product
attention kernels first in its priority order inside the fast path's UNet call (``torch.nn.attention.
sdpa_kernel``, traced into the compiled graph); a shape that kernel cannot serve falls back to the others in
PyTorch's order. "auto" leaves PyTorch's choice (FlashAttention-2 first). cuDNN's attention is reported
1.7-2.3x faster than FlashAttention-2 on Hopper GPUs for language-model shapes, and was reported slower for
SD 1.5's head sizes (40, 80, 160) in 2024; not measured here yet (``bench/bench_unet_tuning.py`` times every
kernel on the UNet's own attention calls). It needs CUDA: PyTorch's CPU attention ignores the order
(elsewhere "auto", with a note). The order is fixed when :func:`accelerate` runs; call it again to change
it. The order is process-wide while it is set (the UNet's eager calls, and its compile and capture):
attention on another thread at that moment follows it too.

``inductor`` passes more Inductor options to ``torch.compile`` for these networks (names from
``torch._inductor.config``, e.g. ``{"combo_kernels": True}``, which fuses independent small kernels into one
launch); their names and types are checked against that config, and the CUDA-graph ones are refused (the fast
path captures its own). They override what an ``autotune`` mode sets (e.g. ``coordinate_descent_tuning``).
None is on by default; ``bench/bench_unet_tuning.py`` measures candidates (``+combo``).

``cudnn_benchmark`` sets ``torch.backends.cudnn.benchmark``, which is process-wide (``model.decelerate()``
puts back the value it found). ``fuse_qkv`` copies the attention weights into fused projections when it
is turned on: after changing the UNet's weights (a LoRA, a fine-tune), call ``model.accelerate(...)``
again. While fused, attention calls ``to_qkv`` (``to_kv`` for cross-attention) instead of ``to_q``,
``to_k`` and ``to_v``, in the eager UNet too: hooks on those three see nothing until ``decelerate()``.
With ``compile`` on, Inductor also runs 1x1 convolutions as matrix products (``conv_1x1_as_mm``) and keeps
its FX graph cache on, and Dynamo's recompile limit is raised to 64: these are process-wide, stay set after
``decelerate()``, and apply to other ``torch.compile`` calls in the process too.

:func:`accelerate` checks every argument before it changes the model. After ``model.to(...)`` to another
device or dtype, the fast path is applied again with the arguments it was asked for ("auto" resolves for
the new device). Do not call ``accelerate``, ``decelerate``, ``set_preview_decoder`` or ``model.to`` while a
live app is rendering from another thread: they change the networks under it (stop it, or let it finish).

Asking for ``cuda_graphs=True`` without CUDA, or ``compile=True`` where compilation fails, warns and
runs eagerly: the :class:`FastPath` that :func:`accelerate` returns says what is on and why the rest
is off. The compiled kernels are cached on disk (``compile_cache``, default
``~/.cache/latentlib/torchinductor``) so a second session starts warm.

The preview decoder (``model.generate(..., decoder="preview")``) is an ``AutoencoderTiny`` (TAESD)
that the user loads with :func:`load_preview_decoder` or sets with
:meth:`latentlib.Model.set_preview_decoder`; nothing is downloaded implicitly. Without one, "preview"
decodes with the full VAE.

The fast path is used for a denoising step only when nothing needs to see inside the UNet: with an
h-space edit, with forward hooks registered on any UNet module (e.g. a collector) or for every module, or
with a module's ``forward`` replaced (diffusers' hooks: layerwise casting, group offloading; accelerate's CPU
offload), the loop calls the eager UNet for that generation. Likewise a decoder with hooks decodes eagerly.
"""

from __future__ import annotations

import os
import threading
import time
import typing
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = ["FastPath", "accelerate", "load_preview_decoder", "warm_up"]

_AUTO = "auto"
_FUSED_LAYERS = ("to_qkv", "to_kv", "to_added_qkv")  # what diffusers' fuse_qkv_projections adds
_FLAGS = ("sdpa", "channels_last", "compile", "cuda_graphs", "fuse_qkv", "cudnn_benchmark", "cache")
_ATTENTION = ("auto", "cudnn", "flash", "efficient", "math")  # ``attention``: which SDPA kernel goes first
_EAGER_ORDER = threading.Lock()  # eager UNet calls under an attention order, whose save and restore are global
# torch.compile's arguments per ``autotune`` value
_AUTOTUNE = {"off": {}, "coordinate-descent": {"options": {"coordinate_descent_tuning": True}},
             "max-autotune": {"mode": "max-autotune-no-cudagraphs"}}


@dataclass
class FastPath:
    """What :func:`accelerate` turned on (``model.fast``), and why the rest is off.

    Attributes:
        dtype: the networks' dtype after acceleration ("float16", "bfloat16" or "float32").
        sdpa, channels_last, compile, cuda_graphs, fuse_qkv, cudnn_benchmark, cache: whether each lever is on.
        compile_cache: folder of the on-disk compile cache (None when not compiling).
        autotune: how the compiled kernels are tuned ("off", "coordinate-descent", "max-autotune").
        static_shapes: whether each batch size is compiled on its own rather than with a symbolic batch.
        attention: the SDPA kernel the fast UNet tries first ("auto": PyTorch's order).
        inductor: extra Inductor options the networks were compiled with (empty: none).
        notes: one line per flag that was asked for but is off, and why.
    """

    dtype: str
    sdpa: bool
    channels_last: bool
    compile: bool
    cuda_graphs: bool
    cache: bool
    fuse_qkv: bool = False
    cudnn_benchmark: bool = False
    compile_cache: str | None = None
    autotune: str = "off"
    static_shapes: bool = False
    attention: str = "auto"
    inductor: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # runtime state, not part of the report
    _unet: object = field(default=None, repr=False)
    _decode: dict = field(default_factory=dict, repr=False)
    _prompts: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _noise: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _starts: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _modules: dict = field(default_factory=dict, repr=False)  # network -> its modules' dicts (the hook check)
    cache_size: int = 64
    _cudnn_before: bool | None = field(default=None, repr=False)
    _asked: dict = field(default_factory=dict, repr=False)  # accelerate's arguments as given (re-applied on moves)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def restore_global_state(self) -> None:
        """Put ``torch.backends.cudnn.benchmark`` back to what it was before this fast path set it."""
        if self._cudnn_before is not None:
            torch.backends.cudnn.benchmark = self._cudnn_before
            self._cudnn_before = None

    def report(self) -> dict:
        """The flags as a plain dict (for benchmark JSON and app status lines). ``compile`` turns False,
        with a note, once a compiled network has fallen back to eager."""
        notes, compiled = list(self.notes), self.compile
        for what, runner in self._compiled():
            if runner.error is not None:
                compiled = False
                notes.append(f"compile: the {what} runs eagerly ({runner.error})")
        return {"dtype": self.dtype, **{flag: getattr(self, flag) for flag in _FLAGS}, "compile": compiled,
                "compile_cache": self.compile_cache, "autotune": self.autotune,
                "static_shapes": self.static_shapes, "attention": self.attention, "inductor": dict(self.inductor), "notes": notes}

    def _runners(self) -> list:
        """Every UNet (one per set of extra inputs) and decoder runner."""
        return list(getattr(self._unet, "runners", {}).values()) + list(self._decode.values())

    def _compiled(self):
        for runner in self._runners():
            inner = runner.fn if isinstance(runner, _Graphed) else runner
            if isinstance(inner, _Compiled):
                yield inner.what, inner

    # -- caches -------------------------------------------------------------------------------------
    def _remember(self, store: OrderedDict, key, make):
        if not self.cache:
            return make()
        with self._lock:  # a live app's worker and the notebook may share the caches
            if key in store:
                store.move_to_end(key)
                return store[key]
        value = make()  # outside the lock: making may take a while (and may use another cache)
        with self._lock:
            store[key] = value
            while len(store) > self.cache_size:
                store.popitem(last=False)
        return value

    def cached_prompt(self, model, prompts: tuple[str, ...], make):
        return self._remember(self._prompts, (prompts, str(model.device), model.dtype), make)

    def cached_noise(self, key, make):
        return self._remember(self._noise, key, make)

    def cached_start(self, key, make):
        return self._remember(self._starts, key, make)

    def clear(self) -> None:
        """Forget cached prompt embeddings, noise, start-image latents and captured graphs (e.g. after changing
        weights)."""
        self._prompts.clear()
        self._noise.clear()
        self._starts.clear()
        for runner in self._runners():
            if isinstance(runner, _Graphed):
                runner.graphs.clear()


def _resolve(name: str, value, default: bool) -> bool:
    if value == _AUTO:
        return default
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True, False or 'auto', got {value!r}.")
    return value


def _inductor_cache(folder) -> str:
    """Point Inductor's cache at ``folder``; without one, at TORCHINDUCTOR_CACHE_DIR if set, else latentlib's."""
    if folder is None:
        folder = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or Path.home() / ".cache" / "latentlib" / "torchinductor"
    Path(folder).mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    try:
        import torch._inductor.config as inductor

        inductor.fx_graph_cache = True
        inductor.conv_1x1_as_mm = True  # 1x1 convolutions as matrix products (diffusers' recommended setting)
    except (ImportError, AttributeError):  # pragma: no cover - very old torch
        pass
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


def _raise_recompile_limit(limit: int) -> None:
    """Dynamo compiles at most ``recompile_limit`` (8 by default) variants per code object, then runs
    eagerly without a word; the UNet and decoder runners of every model share theirs."""
    import torch._dynamo.config as dynamo

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo, name) and getattr(dynamo, name) < limit:
            setattr(dynamo, name, limit)
            return


class _Compiled:
    """``torch.compile`` of a callable that falls back to the eager callable (with one warning, and a note
    in :meth:`FastPath.report`) if compiling fails, e.g. without a C++ compiler on CPU.

    Default (automatic) dynamic shapes: a second batch size recompiles once with a symbolic batch, which
    later sizes reuse; each CUDA graph still has fixed shapes (``static_shapes`` compiles each size on its own).
    Dynamo keeps its cache per code object, so every network, in every model, shares the recompile limit;
    :func:`accelerate` raises it. ``options``: torch.compile's keyword arguments (:func:`_compile_options`).
    """

    def __init__(self, fn, what: str, options: dict | None = None):
        self.eager, self.what = fn, what
        self.compiled = torch.compile(fn, **(options or {}))
        self.error: str | None = None

    def __call__(self, *args):
        if self.error is None:
            try:
                return self.compiled(*args)
            except torch.OutOfMemoryError:
                raise  # the eager call would need the memory too; compile stays on for smaller calls
            except Exception as error:  # noqa: BLE001 - a compiler failure means: run eagerly
                if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
                    raise  # inside a CUDA-graph capture an eager retry would only hide the cause
                result = self.eager(*args)  # fails too when the call itself is at fault: compile then stays on
                self.error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                warnings.warn(f"torch.compile of the {self.what} failed ({self.error}); running it eagerly.",
                              RuntimeWarning, stacklevel=3)
                return result
        return self.eager(*args)


class _Graphed:
    """Capture ``fn(*tensors)`` in a CUDA graph per input signature (shapes, dtypes) and replay it.

    Inputs are copied into static buffers before each replay and the output is cloned after, so
    callers see ordinary tensors. All graphs share one memory pool. A lock makes the static buffers
    safe to share between threads (a live app's worker and the notebook), and capture is
    thread-local, so CUDA work on other threads does not break it.
    """

    def __init__(self, fn, warmup: int = 3):
        self.fn, self.warmup = fn, warmup
        self.graphs: dict = {}
        self.pool = None
        self.lock = threading.Lock()

    def __call__(self, *tensors):
        if tensors[0].device.type != "cuda":  # e.g. a model moved off the GPU: nothing to capture
            return self.fn(*tensors)
        key = tuple((tuple(t.shape), t.dtype, t.device) for t in tensors)
        with self.lock:
            entry = self.graphs.get(key)
            if entry is None:
                entry = self.graphs[key] = self._capture(tensors)
            graph, static_in, static_out = entry
            for buffer, value in zip(static_in, tensors, strict=True):
                buffer.copy_(value)
            graph.replay()
            return static_out.clone()

    def _capture(self, tensors):
        with torch.cuda.device(tensors[0].device):  # the tensors' GPU, which need not be the current one
            return self._capture_here(tensors)

    def _capture_here(self, tensors):
        static_in = [t.clone() for t in tensors]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):  # compiles (when compiled) and settles allocator state
                self.fn(*static_in)
        torch.cuda.current_stream().wait_stream(stream)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            static_out = self.fn(*static_in)
        return graph, static_in, static_out


def _unet_fn(unet, keys: tuple[str, ...], attention_order: list | None = None):
    """A positional-tensor wrapper of the UNet call: (sample, t, text, *extras named by ``keys``), inside
    ``sdpa_kernel(attention_order)`` when given. The context is part of what torch.compile traces, so the chosen
    kernel is in the compiled graph, its guards and its cache key (a kernel order set around a compiled call
    would not reach a graph traced or cached under another order)."""

    def call(sample, t, text, *extras):
        named = dict(zip(keys, extras, strict=True))
        added = {k[6:]: v for k, v in named.items() if k.startswith("added.")} or None
        return unet(sample, t, encoder_hidden_states=text, timestep_cond=named.get("timestep_cond"),
                    added_cond_kwargs=added, return_dict=False)[0]

    if attention_order is None:
        return call
    from torch.nn.attention import sdpa_kernel

    def ordered(sample, t, text, *extras):
        if torch.compiler.is_compiling():  # traced into the graph: nothing process-wide happens at run time
            with sdpa_kernel(attention_order, set_priority=True):
                return call(sample, t, text, *extras)
        with _EAGER_ORDER, sdpa_kernel(attention_order, set_priority=True):  # eager: one such call at a time
            return call(sample, t, text, *extras)

    return ordered


class _UNetRunner:
    """What the denoising loop calls instead of ``model.unet`` when the fast path is on."""

    def __init__(self, unet, *, compile: bool, cuda_graphs: bool, options: dict | None = None,
                 attention: str = "auto"):
        self.unet, self.compile, self.cuda_graphs, self.options = unet, compile, cuda_graphs, options
        self.attention_order = None if attention == _AUTO else _attention_order(attention)  # fixed from now on
        self.runners: dict = {}

    def __call__(self, sample, t, text, timestep_cond=None, added=None):
        extras = {}
        if timestep_cond is not None:
            extras["timestep_cond"] = timestep_cond
        for k, v in (added or {}).items():
            extras[f"added.{k}"] = v
        keys = tuple(extras)
        runner = self.runners.get(keys)
        if runner is None:
            runner = _unet_fn(self.unet, keys, self.attention_order)
            if self.compile:
                runner = _Compiled(runner, "UNet", self.options)
            if self.cuda_graphs:
                runner = _Graphed(runner)
            self.runners[keys] = runner
        if not torch.is_tensor(t):
            t = torch.tensor(t, device=sample.device)
        # float32, as the UNet's timestep embedding casts it (diffusers' get_timestep_embedding: .float()), so
        # samplers with integer timesteps (DDIM, DPM++) and float ones (Euler, Heun) share one compiled graph
        return runner(sample, t.to(sample.device, torch.float32), text, *extras.values())


def _sdpa_backends() -> dict:
    """``attention``'s kernel names -> (PyTorch's SDPBackend, whether PyTorch has it enabled now), in PyTorch's
    default priority order."""
    from torch.nn.attention import SDPBackend

    cuda = torch.backends.cuda
    return {"flash": (SDPBackend.FLASH_ATTENTION, cuda.flash_sdp_enabled()),
            "efficient": (SDPBackend.EFFICIENT_ATTENTION, cuda.mem_efficient_sdp_enabled()),
            "math": (SDPBackend.MATH, cuda.math_sdp_enabled()),
            "cudnn": (SDPBackend.CUDNN_ATTENTION, cuda.cudnn_sdp_enabled())}


def _attention_order(first: str) -> list:
    """SDPA backends for ``attention=first``: that one, then the others PyTorch has enabled, in its default order."""
    backends = _sdpa_backends()
    return [backends[first][0]] + [backend for name, (backend, enabled) in backends.items() if name != first and enabled]


def _compile_options(autotune: str, static_shapes: bool, inductor: dict | None = None) -> dict:
    """torch.compile's keyword arguments for the fast path's ``autotune``, ``static_shapes`` and ``inductor``
    options. torch.compile takes a ``mode`` or ``options``, not both: with extra options, a mode becomes the
    options it stands for (``torch._inductor.list_mode_options``)."""
    tuned = _AUTOTUNE[autotune]
    if inductor:
        from torch._inductor import list_mode_options

        base = list_mode_options(tuned["mode"]) if "mode" in tuned else tuned.get("options", {})
        tuned = {"options": {**base, **inductor}}
    return {**({"dynamic": False} if static_shapes else {}), **tuned}


def _check_inductor(inductor) -> dict:
    """``accelerate``'s ``inductor`` argument: Inductor option names (``torch._inductor.config``, dotted for nested
    ones) mapped to plain values; the CUDA-graph options are the fast path's own (``cuda_graphs``)."""
    if inductor is None:
        return {}
    if not isinstance(inductor, dict):
        raise TypeError(f"`inductor` must be a dict of Inductor options (torch._inductor.config), e.g. "
                        f"{{'combo_kernels': True}}; got {inductor!r}.")
    from torch._inductor import config

    known = config.get_config_copy()  # every option, nested ones dotted ("triton.unique_kernel_names")
    for key, value in inductor.items():
        if key not in known:
            raise ValueError(f"`inductor` has {key!r}, which is not an option of torch._inductor.config "
                             f"(names as there, dotted for nested ones, e.g. 'triton.unique_kernel_names').")
        if key.startswith("triton.cudagraph"):
            raise ValueError(f"`inductor` has {key!r}: the fast path captures its own CUDA graphs "
                             f"(`cuda_graphs`); Inductor's would nest inside them.")
        if not isinstance(value, (bool, int, float, str)):
            raise TypeError(f"`inductor[{key!r}]` must be a bool, int, float or str, got {value!r}.")
        kind = config.get_type(key)  # as torch.compile checks it (a generic such as "float | None" it does not)
        if typing.get_origin(kind) is None and isinstance(kind, type) and not isinstance(value, kind):
            raise TypeError(f"`inductor[{key!r}]` must be a {kind.__name__} (torch._inductor.config.{key}), got "
                            f"{value!r} ({type(value).__name__}).")
    return dict(inductor)


def _decode_runner(vae, *, compile: bool, cuda_graphs: bool, options: dict | None = None):
    def call(z):
        return vae.decode(z, return_dict=False)[0]

    runner = call
    if compile:
        runner = _Compiled(runner, "decoder", options)
    if cuda_graphs:
        runner = _Graphed(runner)
    return runner


def accelerate(model, *, dtype=_AUTO, sdpa=_AUTO, channels_last=_AUTO, compile=_AUTO, cuda_graphs=_AUTO,
               fuse_qkv=_AUTO, cudnn_benchmark=_AUTO, cache=True, compile_cache=None, autotune="off",
               static_shapes=False, attention="auto", inductor=None) -> FastPath:
    """Turn on the fast path for ``model`` (in place) and return what is on; see the module docstring.

    Args:
        dtype: "auto" (float16 on CUDA, unchanged elsewhere), "float16", "bfloat16", "float32" or a torch dtype.
        sdpa, channels_last, compile, cuda_graphs, fuse_qkv, cudnn_benchmark: True, False or "auto".
        cache: keep the last 64 prompt embeddings, seed noises and start-image latents (cheap; on by default).
        compile_cache: folder for compiled kernels kept between sessions.
        autotune: "off" (default), "coordinate-descent" or "max-autotune": how Inductor tunes the compiled
            kernels (module docstring); applies only with ``compile``.
        static_shapes: compile each batch size on its own (module docstring); applies only with ``compile``.
        attention: "auto" (PyTorch's order), "cudnn", "flash", "efficient" or "math": the scaled-dot-product
            attention kernel the fast UNet tries first (module docstring); needs ``sdpa``.
        inductor: more Inductor options for torch.compile, e.g. ``{"combo_kernels": True}`` (names from
            ``torch._inductor.config``; they apply to these networks' compiles only); with ``compile`` only.

    Returns:
        :class:`FastPath`, also stored as ``model.fast``. ``model.accelerate(...)`` is the same call;
        ``model.decelerate()`` turns it off again.
    """
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from .model import _resolve_dtype

    asked = {"dtype": dtype, "sdpa": sdpa, "channels_last": channels_last, "compile": compile,
             "cuda_graphs": cuda_graphs, "fuse_qkv": fuse_qkv, "cudnn_benchmark": cudnn_benchmark, "cache": cache,
             "compile_cache": compile_cache, "autotune": autotune, "static_shapes": static_shapes,
             "attention": attention, "inductor": dict(inductor) if isinstance(inductor, dict) else inductor}
    cuda = model.device.type == "cuda"
    notes = []
    dtype = (torch.float16 if cuda else model.dtype) if dtype == _AUTO else _resolve_dtype(dtype, model.device)
    sdpa = _resolve("sdpa", sdpa, True)
    want_compile = _resolve("compile", compile, cuda)
    # NHWC pays off once Inductor compiles for it; eager NHWC convolutions were slower than contiguous ones on
    # an H100 (SDXL's uncompiled VAE decode: 141 ms against diffusers' 92 ms), so "auto" ties it to compile.
    channels_last = _resolve("channels_last", channels_last, cuda and want_compile)
    want_graphs = _resolve("cuda_graphs", cuda_graphs, cuda)
    fuse_qkv = _resolve("fuse_qkv", fuse_qkv, cuda)
    cudnn_benchmark = _resolve("cudnn_benchmark", cudnn_benchmark, cuda)
    if not isinstance(cache, bool):
        raise TypeError(f"`cache` must be True or False, got {cache!r}.")
    if not isinstance(autotune, str) or autotune not in _AUTOTUNE:
        raise ValueError(f"`autotune` must be one of {', '.join(map(repr, _AUTOTUNE))}, got {autotune!r}.")
    if autotune != "off" and not want_compile:
        notes.append(f"autotune: off ({autotune!r} tunes compiled kernels, and compile is off)")
        autotune = "off"
    if not isinstance(static_shapes, bool):
        raise TypeError(f"`static_shapes` must be True or False, got {static_shapes!r}.")
    if static_shapes and not want_compile:
        notes.append("static_shapes: off (it shapes compiled graphs, and compile is off)")
        static_shapes = False
    inductor = _check_inductor(inductor)
    if inductor and not want_compile:
        notes.append("inductor: off (its options shape compiled code, and compile is off)")
        inductor = {}
    if not isinstance(attention, str) or attention not in _ATTENTION:
        raise ValueError(f"`attention` must be one of {', '.join(map(repr, _ATTENTION))}, got {attention!r}.")
    if want_graphs and not cuda:
        warnings.warn(f"cuda_graphs=True needs a CUDA device; this model is on {model.device}, so steps run "
                      f"without graphs.", RuntimeWarning, stacklevel=2)
        notes.append(f"cuda_graphs: off (the model is on {model.device}, graphs need CUDA)")
        want_graphs = False
    if sdpa and not hasattr(torch.nn.functional, "scaled_dot_product_attention"):  # pragma: no cover - torch < 2
        notes.append("sdpa: off (this torch has no scaled_dot_product_attention)")
        sdpa = False
    if attention != _AUTO and not sdpa:
        notes.append(f"attention: auto ({attention!r} is a scaled-dot-product attention kernel, and sdpa is off)")
        attention = _AUTO
    if attention != _AUTO and not cuda:  # PyTorch's CPU attention takes its flash kernel whatever the order
        notes.append(f"attention: auto (the model is on {model.device}; PyTorch orders attention kernels on CUDA only)")
        attention = _AUTO
    if cudnn_benchmark and not cuda:
        notes.append(f"cudnn_benchmark: off (the model is on {model.device})")
        cudnn_benchmark = False
    # every argument is checked: now change the model
    previous = getattr(model, "fast", None)
    cudnn_before = previous._cudnn_before if previous is not None and previous._cudnn_before is not None \
        else torch.backends.cudnn.benchmark
    model.fast = None  # off while the model changes (so its dtype change does not re-apply the old flags)
    if dtype != model.dtype:
        model.to(dtype=dtype)
    torch.backends.cudnn.benchmark = True if cudnn_benchmark else cudnn_before
    _unfuse(model.unet)
    decoders = [m for m in (model.vae, getattr(model, "preview_decoder", None)) if m is not None]
    for module in (model.unet, *decoders):
        if hasattr(module, "set_attn_processor"):
            module.set_attn_processor(AttnProcessor2_0() if sdpa else AttnProcessor())
        module.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if channels_last:
        for part in ("encoder", "quant_conv"):  # the encoder is neither compiled nor graphed: it stays contiguous
            if getattr(model.vae, part, None) is not None:
                getattr(model.vae, part).to(memory_format=torch.contiguous_format)
    else:
        model._eager_layout()  # the eager path's layout (on the CPU, a channels-last VAE decoder)
    if fuse_qkv and not sdpa:
        notes.append("fuse_qkv: off (the fused attention processor needs sdpa)")
        fuse_qkv = False
    if fuse_qkv:
        try:
            model.unet.fuse_qkv_projections()
        except (AttributeError, ValueError) as error:  # e.g. added KV projections
            notes.append(f"fuse_qkv: off ({error})")
            fuse_qkv = False
        for module in model.unet.modules():  # the fused copies are new layers: frozen like the model's weights
            for name in _FUSED_LAYERS:
                if isinstance(getattr(module, name, None), torch.nn.Module):
                    getattr(module, name).requires_grad_(False)
    cache_dir = _inductor_cache(compile_cache) if want_compile else None
    if want_compile:
        _raise_recompile_limit(64)
    fast = FastPath(dtype=str(model.dtype).replace("torch.", ""), sdpa=sdpa, channels_last=channels_last,
                    compile=want_compile, cuda_graphs=want_graphs, cache=cache, fuse_qkv=fuse_qkv,
                    cudnn_benchmark=cudnn_benchmark, compile_cache=cache_dir, autotune=autotune,
                    static_shapes=static_shapes, attention=attention, inductor=inductor, notes=notes,
                    _cudnn_before=cudnn_before, _asked=asked)
    if want_compile or want_graphs or attention != _AUTO:
        options = _compile_options(autotune, static_shapes, inductor)
        fast._unet = _UNetRunner(model.unet, compile=want_compile, cuda_graphs=want_graphs, options=options,
                                 attention=attention)
        for which, module in (("full", model.vae), ("preview", getattr(model, "preview_decoder", None))):
            if module is not None and (want_compile or want_graphs):
                fast._decode[which] = _decode_runner(module, compile=want_compile, cuda_graphs=want_graphs,
                                                     options=options)
    model.fast = fast
    return fast


def _unfuse(unet) -> None:
    """Undo ``fuse_qkv`` (diffusers keeps the unfused weights; the fused copies are dropped)."""
    if getattr(unet, "original_attn_processors", None) is not None:
        unet.unfuse_qkv_projections()
        from diffusers.models.attention_processor import Attention

        for module in unet.modules():
            if isinstance(module, Attention) and getattr(module, "fused_projections", False):
                for name in _FUSED_LAYERS:
                    if hasattr(module, name):
                        delattr(module, name)
                module.fused_projections = False
        unet.original_attn_processors = None


def warm_up(model, *, n=1, cfg=(False, True), height=None, width=None, decoders=None, decode_batch_size: int = 8,
            progress: bool = True) -> dict[str, float]:
    """Compile and capture the fast path's networks for the shapes a session will use, now, instead of in the
    first frame of each shape (on a GPU with a cold compile cache, a minute or more per shape: a slider would
    hang on its first move). Each shape runs the way :meth:`latentlib.Model.generate` runs it: one step of the
    UNet per batch size, then each decoder on latents of each image count.

    Args:
        n: images per call, an int or a list of them (the UNet's batch is ``n``, twice that with CFG).
        cfg: without classifier-free guidance (False), with it (True), or both (default): the live frame
            (1 step, no guidance) and a guided frame need different UNet batches.
        height, width: pixels (default: the model's size).
        decoders: "full" and/or "preview" (default: the full VAE, and the preview decoder when one is set).
        decode_batch_size: latents per decoder call, as given to ``generate`` (default 8, as there).
        progress: show a progress bar, one tick per shape.

    Returns:
        Seconds per shape, e.g. ``{"UNet batch 1 at 512x512": 48.2, "UNet batch 2 at 512x512": 31.0,
        "full decoder, 1 image at 512x512": 20.4}``; on a warm compile cache far less. A shape used later that
        is not warmed here (another image size, another number of images) compiles on first use; every sampler
        shares the UNet's graphs (timesteps go in as float32).
        ``set_preview_decoder``, ``model.to`` and ``accelerate`` build new runners: warm up after them. On the CPU
        without ``compile`` nothing is compiled or captured; the calls just run once. An inpainting UNet runs
        eagerly (the fast UNet does not take its mask inputs), so only the decoders are warmed up for it.

    Example:
        >>> model.accelerate()
        >>> model.warm_up(n=[1, 4])   # live frames of 1 and 4 images, with and without guidance
    """
    from tqdm.auto import tqdm

    from . import sampling
    from ._checks import check_choice, check_int

    if getattr(model, "fast", None) is None:
        raise RuntimeError("warm_up compiles and captures the fast path's networks, and this model has none: "
                           "call model.accelerate() first.")
    counts = [check_int("n", v, minimum=1) for v in ([n] if not isinstance(n, (list, tuple)) else n)]
    guided = [cfg] if isinstance(cfg, bool) else list(cfg) if isinstance(cfg, (list, tuple)) else None
    if not counts or not guided or not all(isinstance(v, bool) for v in guided):
        raise TypeError(f"`n` must be an int >= 1 or a non-empty list of them, and `cfg` True, False or a "
                        f"non-empty list of those; got n={n!r}, cfg={cfg!r}.")
    height, width = model._check_size(height, width)
    decode_batch_size = check_int("decode_batch_size", decode_batch_size, minimum=1)
    if not isinstance(progress, bool):
        raise TypeError(f"`progress` must be True or False, got {progress!r}.")
    has_preview = getattr(model, "preview_decoder", None) is not None  # else "preview" decodes with the VAE
    if decoders is None:
        decoders = ["full", "preview"] if has_preview else ["full"]
    if not isinstance(decoders, (str, list, tuple)) or not decoders:
        raise TypeError(f"`decoders` must be 'full', 'preview' or a non-empty list of them, got {decoders!r}.")
    decoders = [decoders] if isinstance(decoders, str) else list(decoders)
    for value in decoders:
        check_choice("decoders", value, sampling.DECODERS)
    doubles = model.unet.config.time_cond_proj_dim is None  # a guidance-embedding UNet takes no CFG batch
    size = f"{width}x{height}"
    plan = {}  # label -> call, in order, one per shape
    # an inpainting UNet (more input channels than latents) takes its mask as extra inputs, which the fast UNet
    # does not serve (the loop runs it eagerly): only its decoders are warmed up
    inpainting = model.unet.config.in_channels != model.latent_channels
    for count in [] if inpainting else counts:
        for with_cfg in guided:
            batch = count * (2 if with_cfg and doubles else 1)
            plan.setdefault(f"UNet batch {batch} at {size}", lambda c=count, g=with_cfg: model.generate(
                "", n=c, steps=1, guidance=5.0 if g else 0.0, height=height, width=width, output="latent",
                progress=False))
    for count in counts:
        for which in dict.fromkeys(decoders):
            name = which if has_preview else "full"
            latents = (count, model.latent_channels, height // model.vae_scale_factor, width // model.vae_scale_factor)
            plan.setdefault(f"{name} decoder, {count} image{'s' * (count > 1)} at {size}", lambda z=latents, d=name:
                            sampling.decode_latents(model, torch.zeros(z, device=model.device, dtype=model.dtype),
                                                    "pt", decoder=d, batch_size=decode_batch_size))
    seconds = {}
    with tqdm(total=len(plan), desc="warm up", disable=not progress) as bar:
        for label, call in plan.items():
            bar.set_postfix_str(label)
            began = time.perf_counter()
            with torch.no_grad():
                call()
            if model.device.type == "cuda":
                torch.cuda.synchronize(model.device)
            seconds[label] = round(time.perf_counter() - began, 3)
            bar.update()
    return seconds


def load_preview_decoder(folder, *, device=None, dtype=None):
    """An ``AutoencoderTiny`` (TAESD, e.g. a local copy of madebyollin/taesd) from a local folder.

    Never downloads: ``folder`` must exist. The result goes to :meth:`latentlib.Model.set_preview_decoder`.
    """
    from diffusers import AutoencoderTiny

    path = Path(folder)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"`folder` {str(folder)!r} is not an AutoencoderTiny folder (no config.json there); "
                                f"save one with AutoencoderTiny.save_pretrained or download TAESD yourself.")
    tiny = AutoencoderTiny.from_pretrained(path, local_files_only=True)
    if device is not None or dtype is not None:
        tiny.to(device=device, dtype=dtype)
    return tiny.eval().requires_grad_(False)
