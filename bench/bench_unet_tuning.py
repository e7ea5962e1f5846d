"""The fast path's UNet step alone, per compile variant: the quick GPU experiment for issue 8's batch-2 target.

bench_fast.py measures everything (diffusers' pipeline, eager images, every figure) and then compiles again
for ``--also-autotune``; on an H200 the whole of it left 320 s for the tuned compile, which did not finish
(session 31). This script builds SD 1.5's UNet layout (random weights), times diffusers' eager UNet at each
``--batches`` size, then for each of ``--variants`` in turn accelerates the model with it (``torch.compile``
+ CUDA graphs, as ``model.accelerate()`` does on CUDA) and times the fast UNet step at each batch size, in the
order given. A variant is an autotune mode ("off", "coordinate-descent", "max-autotune"), with "+static" for
``static_shapes=True`` (each batch size compiled on its own; by default the second size recompiles with a
symbolic batch, as in bench_fast, which compiles batch 1 first) and "+cudnn", "+flash", "+efficient" or
"+math" for accelerate's ``attention`` (the scaled-dot-product attention kernel tried first), or "+best": the
kernel whose attention timings (below) at the deciding batch size (``--decide-batch``: 2 when listed) beat
PyTorch's choice by more than 5%, run under its own name (e.g. "off+static+efficient", with ``chosen_as``), or
skipped with the reason; and "+combo" for Inductor's combo kernels (independent small kernels launched as one:
accelerate's ``inductor``). A static variant times only the deciding batch size (its batch 1 would compile
exactly as the default's first shape does; all of them with ``--all-batches``). Dynamo's state is reset
between variants, so each compiles as a fresh process would; a variant that fails is recorded with
its error and the next one runs. The JSON is written after every measurement (and names the shape being
compiled), so a run cut short keeps what it finished.

Before the variants (no compile, a few seconds) it records the UNet's own attention calls (shapes and
strides of q, k and v, counted over one eager step at each batch size) and times each call with every SDPA
kernel alone ("unsupported" where a kernel cannot serve it) and with PyTorch's own choice: the attention
part of a step per kernel, the quick answer to whether "+cudnn" can pay. After timing each variant, at the
deciding batch size it profiles ``--profile-calls`` steps of the compiled UNet (without the CUDA graph, whose
kernels are the same): the GPU's busy time per step and the kernels that take most of it.

    python bench/bench_unet_tuning.py --device cuda --variants off+static,off+static+cudnn --batches 1,2
    python bench/bench_unet_tuning.py --device cuda --variants coordinate-descent --batches 1,2
    python bench/bench_unet_tuning.py --quick                     # CPU, tiny layout: the smoke run the tests do

On the CPU compile is off by default (and needs a C++ compiler), so there the fast UNet is the eager one and
the figures say nothing about GPU speed. Writes JSON (default bench/results/unet_tuning.json).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import latentlib as ll
from latentlib.fast import _ATTENTION, _sdpa_backends

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import environment, failure, timed, write_report
from bench_fast import TARGETS, _pixels_close, _sd15, _unet_inputs

MODES = ("off", "coordinate-descent", "max-autotune")
KERNELS = tuple(k for k in _ATTENTION if k != "auto")  # accelerate's ``attention`` kernels
BEST = "best"  # a variant's kernel chosen by the attention timings (see _best_kernel)
INDUCTOR = {"combo": {"combo_kernels": True}}  # variant tokens for accelerate's ``inductor`` options
GRAMMAR = (f"a mode ({', '.join(MODES)}), then optionally +static, one of "
           f"{', '.join('+' + k for k in (*KERNELS, BEST))}, and {', '.join('+' + k for k in INDUCTOR)}, "
           f"e.g. off+static+cudnn")


def _variant(text: str) -> tuple[str, dict]:
    """A variant's name in canonical order ("off+cudnn+static" -> "off+static+cudnn") and accelerate's tuning
    arguments for it."""
    mode, *extras = text.split("+")
    kernels = [e for e in extras if e in (*KERNELS, BEST)]
    if mode not in MODES or len(set(extras)) != len(extras) or len(kernels) > 1 \
            or any(e not in ("static", *KERNELS, BEST, *INDUCTOR) for e in extras):
        raise SystemExit(f"--variants: {text!r} is not a variant; each is {GRAMMAR}")
    options = [e for e in INDUCTOR if e in extras]
    name = "+".join([mode, *(["static"] if "static" in extras else []), *kernels, *options])
    return name, {"autotune": mode, "static_shapes": "static" in extras, "attention": kernels[0] if kernels else "auto",
                  "inductor": {k: v for e in options for k, v in INDUCTOR[e].items()}}


def _listed(text: str, kind, name: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v]
    except ValueError:
        raise SystemExit(f"--{name} must be a comma-separated list, got {text!r}") from None
    if not values:
        raise SystemExit(f"--{name} got {text!r}; give a comma-separated list")
    if kind is int and any(v < 1 for v in values):
        raise SystemExit(f"--{name} got {text!r}; batch sizes are integers >= 1")
    if len(set(values)) != len(values):
        raise SystemExit(f"--{name} got {text!r}; each value once")
    return values


def _attention_calls(model, x, t, text) -> Counter:
    """The UNet's scaled-dot-product attention calls in one eager step, in the layout the fast path gives them
    (``fuse_qkv`` on CUDA: q, k and v are slices of one projection): ((q, k, v) shapes and strides, masked) ->
    how many times."""
    functional, calls = torch.nn.functional, Counter()
    real = functional.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        masked = bool(args) or kwargs.get("attn_mask") is not None or bool(kwargs.get("is_causal"))
        calls[(tuple((tuple(a.shape), tuple(a.stride())) for a in (q, k, v)), masked)] += 1
        return real(q, k, v, *args, **kwargs)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model.accelerate(compile=False, cuda_graphs=False)  # the fast path's attention layout, run eagerly
    functional.scaled_dot_product_attention = spy
    try:
        with torch.no_grad():
            model.unet(x, t, encoder_hidden_states=text)
    finally:
        functional.scaled_dot_product_attention = real
        model.decelerate()
    return calls


def _attention_kernels(calls: Counter, device, dtype, repeats: int, inner: int = 10) -> dict:
    """Time each recorded attention call with PyTorch's choice ("auto") and with each SDPA kernel alone, on random
    q, k, v of the same shapes and strides; ``inner`` calls per sample, so launches overlap as in a graph. A
    kernel that cannot serve a call is None there and counts at "auto"'s time in ``step_ms``."""
    from torch.nn.attention import sdpa_kernel

    sdpa = torch.nn.functional.scaled_dot_product_attention
    backends = {name: backend for name, (backend, _) in _sdpa_backends().items()}
    rows, step, skipped, identical = [], dict.fromkeys(["auto", *backends], 0.0), 0, {}
    for (layout, masked), count in calls.items():
        row = {"q": list(layout[0][0]), "k": list(layout[1][0]), "q_stride": list(layout[0][1]),
               "calls_per_step": count, "ms": {}, "max_abs_vs_auto": {}}
        rows.append(row)
        if masked:
            row["skipped"] = "masked or causal: not timed"
            skipped += count
            continue
        q, k, v = (torch.empty_strided(shape, stride, device=device, dtype=dtype).normal_() for shape, stride in layout)
        reference = sdpa(q, k, v)

        def per_call(q=q, k=k, v=v) -> float:
            return timed(lambda: [sdpa(q, k, v) for _ in range(inner)], device, repeats)["median_ms"] / inner

        row["ms"]["auto"] = per_call()
        for name, backend in backends.items():
            with sdpa_kernel(backend), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PyTorch says at length why a kernel cannot serve a shape
                try:
                    out = sdpa(q, k, v)
                except RuntimeError:  # this kernel cannot serve this call
                    row["ms"][name] = None
                    continue
                try:
                    row["max_abs_vs_auto"][name] = round(float((out.float() - reference.float()).abs().max()), 5)
                    identical.setdefault(name, []).append(bool(torch.equal(out, reference)))
                    row["ms"][name] = per_call()
                except Exception as error:  # noqa: BLE001 - e.g. a CUDA error surfacing at the sync: record it
                    row["ms"][name] = None
                    row.setdefault("errors", {})[name] = f"{type(error).__name__}: {error}"[:300]
        for name in step:
            step[name] += count * (row["ms"][name] if row["ms"][name] is not None else row["ms"]["auto"])
        row["ms"] = {name: None if ms is None else round(ms, 4) for name, ms in row["ms"].items()}
    # a kernel whose output equals PyTorch's choice's bit for bit on every call it served is that choice
    return {"calls": rows, "step_ms": {name: round(ms, 3) for name, ms in step.items()},
            "same_as_auto": [name for name in backends if identical.get(name) and all(identical[name])],
            "calls_not_timed": skipped}


def _best_kernel(attention: dict, margin: float = 0.05) -> tuple[str | None, str]:
    """The SDPA kernel whose attention part of a step (``attention["step_ms"]``, from :func:`_attention_kernels`)
    beats PyTorch's own choice by more than ``margin``, fastest first, and why; None when none does (or the
    attention timings failed). The kernel PyTorch chose itself (``same_as_auto``: the same output bit for bit) is
    not a candidate, whatever the timing noise says."""
    step = attention.get("step_ms") or {}
    auto = step.get("auto")
    same = set(attention.get("same_as_auto", ()))
    timed_kernels = {k: ms for k, ms in step.items() if k in KERNELS and ms is not None and k not in same}
    if auto is None or not timed_kernels:
        return None, f"no attention timings ({attention.get('error', 'none recorded')})"
    best = min(timed_kernels, key=timed_kernels.get)
    figures = ", ".join(f"{k} {ms} ms" for k, ms in sorted(timed_kernels.items(), key=lambda kv: kv[1]))
    if timed_kernels[best] < auto * (1 - margin):
        return best, f"{best} beats PyTorch's choice ({auto} ms per step) by more than {margin:.0%}: {figures}"
    return None, f"no kernel beats PyTorch's choice ({auto} ms per step) by more than {margin:.0%}: {figures}"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--variants", default="off+static,off",
                        help=f"comma-separated, timed in this order; each is {GRAMMAR} (default: off+static,off)")
    parser.add_argument("--batches", default="1,2", help="comma-separated UNet batch sizes, compiled in this order "
                        "(default: 1,2, as bench_fast and a live app meet them)")
    parser.add_argument("--repeats", type=int, default=50, help="timed steps per figure (default: 50)")
    parser.add_argument("--profile-calls", type=int, default=10,
                        help="steps profiled per variant at the deciding batch size (0: no profile; default: 10)")
    parser.add_argument("--decide-batch", type=int, default=None,
                        help="the batch size that decides (+best's kernel, what static variants time, the profile; "
                             "default: 2 when listed, else the last of --batches)")
    parser.add_argument("--all-batches", action="store_true",
                        help="static variants time every batch size, not only the deciding one")
    parser.add_argument("--quick", action="store_true", help="tiny layout, 3 repeats: a smoke run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "unet_tuning.json"))
    args = parser.parse_args(argv)
    names = _listed(args.variants, str, "variants")
    tunings = dict(_variant(v) for v in names)
    variants = list(tunings)
    if len(variants) != len(names):
        raise SystemExit(f"--variants got {args.variants!r}; each variant once (the order of +static and the "
                         f"kernel does not matter)")
    batches = _listed(args.batches, int, "batches")
    decide = args.decide_batch if args.decide_batch is not None else 2 if 2 in batches else batches[-1]
    if decide not in batches:
        parser.error(f"--decide-batch {decide} is not among --batches {args.batches}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.profile_calls < 0:
        parser.error(f"--profile-calls must be 0 or more, got {args.profile_calls}")
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        parser.error(f"--device must be cpu or cuda, got {args.device!r}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but CUDA is not available here; use --device cpu.")
    repeats = 3 if args.quick else args.repeats
    began = time.perf_counter()
    torch.manual_seed(0)
    full = not args.quick
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    model = ll.Model(**_sd15(device, full), name="sd15-full" if full else "sd15-tiny").to(device, dtype)
    inputs = {b: _unet_inputs(model, b) for b in batches}
    report = {"benchmark": "unet_tuning", **environment(), "device": str(device), "model": model.name,
              "dtype": str(dtype).replace("torch.", ""), "quick": args.quick, "repeats": repeats,
              "target_unet_step_b2_ms": TARGETS["unet_step_b2_ms"], "decide_batch": decide, "diffusers_ms": {},
              "attention": {}, "variants": {}}

    def save():
        report["seconds"] = round(time.perf_counter() - began, 1)
        write_report(args.out, report, announce=False)

    eager = {}
    with torch.no_grad():
        for b, (x, t, text, _) in inputs.items():
            eager[b] = model.unet(x, t, encoder_hidden_states=text).sample
            report["diffusers_ms"][f"unet_step_b{b}_ms"] = round(timed(
                lambda x=x, t=t, text=text: model.unet(x, t, encoder_hidden_states=text), device, repeats)["median_ms"], 3)
    print(f"  diffusers (eager): {report['diffusers_ms']}", flush=True)
    save()
    for b, (x, t, text, _) in inputs.items():  # the attention kernels on the UNet's own calls (eager, no compile)
        try:
            report["attention"][f"b{b}"] = _attention_kernels(_attention_calls(model, x, t, text), device, dtype,
                                                              min(repeats, 20))
            print(f"  attention per UNet step, batch {b} (ms): {report['attention'][f'b{b}']['step_ms']}", flush=True)
        except Exception as error:  # noqa: BLE001 - the variants below matter more: record and go on
            report["attention"][f"b{b}"] = failure(error)
            print(f"  attention kernels, batch {b}, failed: {report['attention'][f'b{b}']['error']}", flush=True)
        save()
    for requested in variants:
        variant, tuning = requested, tunings[requested]
        if tuning["attention"] == BEST:  # the kernel the attention timings of the deciding batch favour
            kernel, why = _best_kernel(report["attention"].get(f"b{decide}", {}))
            resolved = None if kernel is None else variant.replace(BEST, kernel)
            if resolved is None or resolved in report["variants"] or resolved in variants:
                report["variants"][variant] = {"skipped": why if resolved is None else f"{why}; {resolved} is "
                                               f"listed already"}
                print(f"  {variant} skipped: {report['variants'][variant]['skipped']}", flush=True)
                save()
                continue
            print(f"  {variant} is {resolved}: {why}", flush=True)
            variant, tuning = resolved, {**tuning, "attention": kernel}
        start = time.perf_counter()
        torch._dynamo.reset()  # no compiled code or automatic-dynamic memory from the previous variant
        model.decelerate()
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the previous variant's graphs and their memory pool go
        row = report["variants"][variant] = {"warmup_s": {}, "ms": {}, "vs_eager": {}}
        if variant != requested:
            row["chosen_as"] = requested
        try:
            timed_inputs = inputs
            if tuning["static_shapes"] and not args.all_batches and len(batches) > 1:
                # a static compile of another batch size decides nothing (batch 1's is the default's first compile)
                timed_inputs = {decide: inputs[decide]}
                row["not_timed"] = [f"b{b}" for b in batches if b != decide]
            _time_variant(model, variant, tuning, timed_inputs, eager, row, device, repeats, save)
        except Exception as error:  # noqa: BLE001 - a benchmark records what broke and goes on to the next variant
            row.update(failure(error))
            print(f"  {variant} failed: {row['error']}", flush=True)
        if args.profile_calls and "error" not in row:
            try:  # apart from the timings: a profiler failure leaves them standing
                profile = row[f"profile_b{decide}"] = _profile_step(model, inputs[decide], device, args.profile_calls)
                print(f"  {variant}: batch {decide} busy {profile['busy_ms_per_step']} ms in {profile['launches_per_step']} "
                      f"launches per step; by kind (ms): {({k: v['ms_per_step'] for k, v in profile['by_kind'].items()})}; "
                      f"top: {[(k['name'][:40], k['ms_per_step']) for k in profile['top'][:5]]}", flush=True)
            except Exception as error:  # noqa: BLE001 - recorded beside the timings
                row["profile_error"] = failure(error)
                print(f"  {variant}: profile failed: {row['profile_error']['error']}", flush=True)
        row["seconds"] = round(time.perf_counter() - start, 1)
        save()
    write_report(args.out, report)
    return report


def _time_variant(model, variant: str, tuning: dict, inputs: dict, eager: dict, row: dict, device, repeats: int, save) -> None:
    """Accelerate ``model`` with ``tuning``, then compile, capture and time the fast UNet step per batch size into
    ``row``, saving after each."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fast = model.accelerate(**tuning)
    run = fast._unet or (lambda x, t, text, cond, added: model.unet(x, t, encoder_hidden_states=text).sample)
    row["fast_path"] = fast.report()
    with torch.no_grad():
        for b, (x, t, text, _) in inputs.items():
            row["compiling"] = f"b{b}"
            save()
            shape_start = time.perf_counter()
            out = run(x, t, text, None, None)  # compiles and captures this shape
            if device.type == "cuda":
                torch.cuda.synchronize()
            row["warmup_s"][f"b{b}"] = round(time.perf_counter() - shape_start, 1)
            row["vs_eager"][f"b{b}"] = _pixels_close(out, eager[b])
            row["ms"][f"unet_step_b{b}_ms"] = round(timed(
                lambda x=x, t=t, text=text: run(x, t, text, None, None), device, repeats)["median_ms"], 3)
            row.pop("compiling")
            print(f"  {variant}: batch {b} {row['ms'][f'unet_step_b{b}_ms']} ms "
                  f"(warm-up {row['warmup_s'][f'b{b}']} s)", flush=True)
            save()


def _profile_step(model, inputs, device, calls: int, top: int = 25) -> dict:
    """Profile ``calls`` UNet steps of the fast path's compiled (not graphed) UNet, with its attention order inside:
    per step, the time the GPU is busy (all kernels) and the ``top`` kernels by time (on the CPU: operators by
    self CPU time). Without a fast UNet runner (no compile, no graphs) the eager UNet is profiled."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    x, t, text, _ = inputs
    fast = model.fast
    runner = None if fast._unet is None else fast._unet.runners.get(())
    inner = getattr(runner, "fn", runner)  # the compiled (or plain) UNet inside the CUDA-graph runner
    if inner is None:
        def inner(x, t, text):
            return model.unet(x, t, encoder_hidden_states=text).sample

    cuda = device.type == "cuda"
    with torch.no_grad():
        inner(x, t, text)
        if cuda:
            torch.cuda.synchronize()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            for _ in range(calls):
                inner(x, t, text)
            if cuda:
                torch.cuda.synchronize()
    events = prof.key_averages()
    if cuda:
        kernels = [e for e in events if e.device_type == DeviceType.CUDA]
        time_of = lambda e: e.self_device_time_total
    else:
        kernels = list(events)
        time_of = lambda e: e.self_cpu_time_total
    kernels.sort(key=time_of, reverse=True)
    busy = sum(time_of(e) for e in kernels) / calls / 1e3
    by_kind = {}
    for e in kernels:
        kind = by_kind.setdefault(_kind(e.key), {"ms_per_step": 0.0, "launches_per_step": 0.0})
        kind["ms_per_step"] += time_of(e) / calls / 1e3
        kind["launches_per_step"] += e.count / calls
    return {"calls": calls, "busy_ms_per_step": round(busy, 3), "what": "GPU kernels" if cuda else "CPU operators",
            "launches_per_step": round(sum(e.count for e in kernels) / calls, 1),
            "by_kind": {k: {name: round(v, 4) for name, v in row.items()} for k, row in
                        sorted(by_kind.items(), key=lambda kv: -kv[1]["ms_per_step"])},
            "top": [{"name": e.key[:160], "ms_per_step": round(time_of(e) / calls / 1e3, 4),
                     "launches_per_step": round(e.count / calls, 2),
                     "share": round(time_of(e) / calls / 1e3 / busy, 4) if busy else None} for e in kernels[:top]]}


# a kernel's (or operator's) kind by its name, first match wins. Inductor's own kernels come first, as their names
# list the operators they fused ("triton_poi_fused_add_convolution_..."): "triton_tem" are its templates (matmul,
# or convolution under max-autotune), the other "triton_" ones pointwise and reductions. cuDNN's convolution
# kernels are implicit GEMMs, so "fprop"/"conv" come before "gemm"; cuBLAS on Hopper names its kernels "nvjet_..."
_KINDS = (("convolution", ("triton_tem_fused_convolution",)), ("matmul", ("triton_tem",)), ("inductor", ("triton",)),
          ("attention", ("flash", "fmha", "attention", "sdpa", "attn")),
          ("convolution", ("convolution", "convolve", "conv2d", "fprop", "dgrad", "implicit_gemm")),
          ("matmul", ("gemm", "xmma", "cutlass", "cublas", "nvjet", "matmul", "addmm", "::mm", "::bmm")))


def _kind(name: str) -> str:
    lower = name.lower()
    return next((kind for kind, marks in _KINDS if any(mark in lower for mark in marks)), "other")


if __name__ == "__main__":
    main()
