"""The core benchmark runs (quick mode) and writes the JSON it promises. No timing is asserted."""

import argparse
import gzip
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latentlib import shapes, testing

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_core.py"


def test_bench_core_quick_writes_json(tmp_path, monkeypatch):
    out = tmp_path / "core.json"
    monkeypatch.setattr(sys, "argv", ["bench_core.py", "--quick", "--out", str(out)])
    runpy.run_path(str(BENCH), run_name="__main__")
    report = json.loads(out.read_text())
    run = report["runs"][0]
    assert run["model"] == "tiny-sd-64px"
    for key in ("encode_b1", "decode_b1", "unet_step_b1", "unet_step_b2"):
        assert run[key]["median_ms"] > 0
    assert run["generate"]["max_pixel_difference"] <= 1  # same inputs, same images as the pipeline
    assert run["generate"]["ratio_latentlib_over_pipeline"] > 0


def test_bench_shapes_quick_writes_json(tmp_path, monkeypatch):
    script = BENCH.parent / "bench_shapes.py"
    out = tmp_path / "shapes.json"
    monkeypatch.setattr(sys, "argv", ["bench_shapes.py", "--quick", "--out", str(out)])
    runpy.run_path(str(script), run_name="__main__")
    report = json.loads(out.read_text())
    for key in ("speed_default_ms", "speed_preview_ms", "speed_preview_no_cfg_ms"):
        assert report[key] > 0
    assert report["threads"] == 2 and set(report["parts"]) >= {"unet_step_b1_ms", "unet_step_b2_ms"}


def test_bench_shapes_fast_path_interleaved(tmp_path, monkeypatch):
    """--fast times eager and the compiled CPU fast path in alternating rounds; without a C++ compiler the
    fast side runs eagerly and the flags say so."""
    script = BENCH.parent / "bench_shapes.py"
    out = tmp_path / "shapes.json"
    monkeypatch.setattr(sys, "argv", ["bench_shapes.py", "--quick", "--fast", "--rounds", "1", "--out", str(out)])
    runpy.run_path(str(script), run_name="__main__")
    report = json.loads(out.read_text())
    assert report["fast_path_warmup_s"] > 0 and min(report["speed_default_ms"], report["speed_preview_ms"]) > 0
    if report["speed_preview_fast_ms"] is None:  # no C++ compiler: the figures are absent and a note says why
        assert report["speed_default_fast_ms"] is None
        assert any("compile" in note for note in report["fast_path_notes"])
    else:
        assert report["speed_default_fast_ms"] > 0 and report["speed_preview_fast_ms"] > 0
        assert report["bars"]["speed_preview_fast_ms"] == 100.0


def test_bench_fast_quick_writes_json(tmp_path, monkeypatch):
    """The CPU variant of the fast-path benchmark: both layouts, every figure beside diffusers', and (with
    every CUDA-only lever off here) the fast path's pixels equal to the eager path's."""
    script = BENCH.parent / "bench_fast.py"
    out = tmp_path / "fast.json"
    monkeypatch.setattr(sys, "argv", ["bench_fast.py", "--quick", "--out", str(out)])
    runpy.run_path(str(script), run_name="__main__")
    report = json.loads(out.read_text())
    assert [r["model"] for r in report["runs"]] == ["sd15-tiny", "sdxl-tiny"] and report["skipped"] == []
    for run in report["runs"]:
        figures = run["figures"]
        for key in ("unet_step_b1_ms", "unet_step_b2_ms", "unet_step_b8_ms", "live_frame_ms", "live_frame_pil_ms",
                    "live_4_steps_ms", "image_25_steps_cfg_ms", "vae_encode_ms", "vae_decode_ms", "sweep_ms"):
            assert figures[key]["diffusers_ms"] > 0 and figures[key]["latentlib_ms"] > 0, key
            assert figures[key]["speedup"] > 0
        for key in ("live_img2img_ms", "live_img2img_encoding_each_frame_ms"):  # latentlib only
            assert figures[key]["latentlib_ms"] > 0 and figures[key]["diffusers_ms"] is None
        assert run["fast_path"]["cuda_graphs"] is False and run["fast_path"]["compile"] is False
        assert all(v["max_abs"] == 0 for v in run["fast_matches_eager"].values()), run["fast_matches_eager"]
        assert [k.split(" at ")[0] for k in run["fast_warmup_shapes_s"]] == [
            "UNet batch 1", "UNet batch 2", "full decoder, 1 image", "preview decoder, 1 image"]


def test_bench_fast_also_autotune_times_a_retuned_fast_path(tmp_path, monkeypatch):
    """--also-autotune accelerates again with kernel tuning and times the UNet steps and the live frame beside the
    untuned figures; on the CPU compile is off, so the tuning is off with a note and the UNet is the eager one.
    --static-shapes and --attention reach both accelerate calls."""
    out = tmp_path / "fast.json"
    monkeypatch.setattr(sys, "argv", ["bench_fast.py", "--quick", "--models", "sd15", "--also-autotune",
                                      "coordinate-descent", "--static-shapes", "--attention", "math", "--out", str(out)])
    runpy.run_path(str(BENCH.parent / "bench_fast.py"), run_name="__main__")
    report = json.loads(out.read_text())
    assert report["also_autotune"] == "coordinate-descent" and report["autotune"] == "off" and report["static_shapes"]
    assert report["attention"] == "math"
    (run,) = report["runs"]
    assert "errors" not in run and run["fast_path"]["autotune"] == "off"
    retuned = run["retuned"]
    assert retuned["autotune"] == "coordinate-descent" and set(retuned["ms"]) == {
        "unet_step_b1_ms", "unet_step_b2_ms", "live_frame_ms"}
    assert all(ms > 0 for ms in retuned["ms"].values())
    assert retuned["fast_path"]["autotune"] == "off" and any("compile is off" in n for n in retuned["fast_path"]["notes"])
    for fast_path in (run["fast_path"], retuned["fast_path"]):  # asked for, and off with a note (no compile here)
        assert any(n.startswith("static_shapes: off") for n in fast_path["notes"])
        assert any(n.startswith("attention: auto (the model is on cpu") for n in fast_path["notes"])
    assert set(retuned["unet_b1_vs_eager"]) == {"max_abs", "mean_abs"}  # on a GPU: the tuned kernels' fp16 error


def test_bench_host_quick_times_the_loop_around_stand_ins(tmp_path, monkeypatch):
    """The host-work bench: every step and decode of every timed frame went to its stand-ins (none ran eagerly
    through the real networks), and --profile records where the time went."""
    out = tmp_path / "host.json"
    monkeypatch.setattr(sys, "argv", ["bench_host.py", "--quick", "--profile", "5", "--out", str(out)])
    runpy.run_path(str(BENCH.parent / "bench_host.py"), run_name="__main__")
    report = json.loads(out.read_text())
    figures = report["figures"]
    phases = figures.pop("live_frame_phases_ms")
    assert set(figures) == {"live_frame_ms", "live_4_steps_ms", "image_25_steps_cfg_ms"}
    assert all(f["median_ms"] > 0 and f["repeats"] == 3 for f in figures.values())
    assert set(phases) == {"before_unet", "between", "after_decode"} and all(v > 0 for v in phases.values())
    frames = 5 + 3  # warm-up and timed calls per figure; then 3 live frames split into phases
    assert report["stand_in_calls"] == {"unet": frames * (1 + 4 + 25) + 3, "decoder": frames * 3 + 3}
    assert "sampling.py" in report["profile_live_frame"]


def test_bench_unet_tuning_quick_times_each_variant(tmp_path, monkeypatch):
    """The UNet-only bench: diffusers' eager step, the UNet's attention calls per SDPA kernel, and the fast step
    per variant and batch, in the order asked; on the CPU compile is off, so each variant's UNet is the eager one
    (same output) with notes."""
    out = tmp_path / "tuning.json"
    monkeypatch.setattr(sys, "argv", ["bench_unet_tuning.py", "--quick", "--variants",
                                      "coordinate-descent,off+static,off+math+static,off+combo", "--batches", "1,2",
                                      "--out", str(out)])
    runpy.run_path(str(BENCH.parent / "bench_unet_tuning.py"), run_name="__main__")
    report = json.loads(out.read_text())
    assert set(report["diffusers_ms"]) == {"unet_step_b1_ms", "unet_step_b2_ms"}
    from diffusers.models.attention_processor import Attention

    attentions = sum(isinstance(m, Attention) for m in testing.tiny_sd_components(sample_size=8)["unet"].modules())
    for b in (1, 2):  # each of the UNet's attention layers (self and cross) calls SDPA once per step
        attention = report["attention"][f"b{b}"]
        assert attentions == 8 and sum(row["calls_per_step"] for row in attention["calls"]) == attentions
        assert all(row["q"][0] == b and row["ms"]["cudnn"] is None and row["ms"]["math"] > 0
                   and row["max_abs_vs_auto"]["math"] < 1e-5 for row in attention["calls"])
        assert attention["step_ms"]["cudnn"] == attention["step_ms"]["auto"] < attention["step_ms"]["math"]
    assert list(report["variants"]) == ["coordinate-descent", "off+static", "off+static+math", "off+combo"]  # canonical
    for row in report["variants"].values():  # each variant's last batch profiled (CPU: operators by self time)
        profile = row["profile_b2"]
        assert profile["calls"] == 10 and profile["what"] == "CPU operators" and profile["busy_ms_per_step"] > 0
        assert len(profile["top"]) == 25 and 0 < sum(k["share"] for k in profile["top"]) <= 1.0001
        assert any("convolution" in k["name"] for k in profile["top"][:3])
        kinds = profile["by_kind"]  # the same time, grouped by kind of kernel (CPU: operator names)
        assert {"convolution", "attention", "matmul"} <= set(kinds) and kinds["convolution"]["ms_per_step"] > 0
        assert sum(k["ms_per_step"] for k in kinds.values()) == pytest.approx(profile["busy_ms_per_step"], rel=1e-3)
        assert sum(k["launches_per_step"] for k in kinds.values()) == pytest.approx(profile["launches_per_step"], abs=0.5)
    assert report["variants"]["off+static+math"]["fast_path"]["attention"] == "auto"  # ordered on CUDA only, with a note
    assert any(n.startswith("attention: auto (the model is on cpu") for n in report["variants"]["off+static+math"]["fast_path"]["notes"])
    for name, row in report["variants"].items():  # a static variant times the deciding (last) batch only
        assert row["fast_path"]["autotune"] == "off" and row["fast_path"]["compile"] is False
        static = "static" in name
        assert list(row["ms"]) == (["unet_step_b2_ms"] if static else ["unet_step_b1_ms", "unet_step_b2_ms"])
        assert row.get("not_timed") == (["b1"] if static else None) and all(ms > 0 for ms in row["ms"].values())
        assert all(v["max_abs"] == 0 for v in row["vs_eager"].values()) and "compiling" not in row
    assert any("compile is off" in n for n in report["variants"]["coordinate-descent"]["fast_path"]["notes"])
    assert any(n.startswith("static_shapes: off") for n in report["variants"]["off+static"]["fast_path"]["notes"])
    assert any(n.startswith("inductor: off") for n in report["variants"]["off+combo"]["fast_path"]["notes"])
    pick = runpy.run_path(str(BENCH.parent / "pick_tuning.py"), run_name="pick")  # reads this JSON as it is
    fastest = min(report["variants"], key=lambda v: report["variants"][v]["ms"]["unet_step_b2_ms"])
    assert pick["pick"](report, margin=0)[0] == fastest
    assert report["decide_batch"] == 2
    for bad in (["--variants", "off,off"], ["--variants", "fast"], ["--variants", "off+cudnn+flash"], ["--decide-batch", "8"],
                ["--variants", "off+static+static"], ["--variants", "off+static+cudnn,off+cudnn+static"],
                ["--batches", "0"]):
        monkeypatch.setattr(sys, "argv", ["bench_unet_tuning.py", "--quick", *bad, "--out", str(out)])
        with pytest.raises(SystemExit):
            runpy.run_path(str(BENCH.parent / "bench_unet_tuning.py"), run_name="__main__")


def test_bench_unet_tuning_best_kernel_follows_the_attention_timings(tmp_path, monkeypatch):
    """+best runs the kernel whose attention part of a step beats PyTorch's choice by more than 2% (under its own
    name), and is skipped, saying why, when none does: on this CPU flash is PyTorch's choice, math slower, cuDNN
    and efficient unsupported."""
    ns = runpy.run_path(str(BENCH.parent / "bench_unet_tuning.py"), run_name="tuning")
    best = ns["_best_kernel"]
    timings = {"step_ms": {"auto": 1.0, "cudnn": 0.9, "flash": 1.0, "efficient": 0.85, "math": 3.0}}
    assert best(timings)[0] == "efficient" and "efficient beats PyTorch's choice (1.0 ms per step)" in best(timings)[1]
    assert best({"step_ms": {"auto": 1.0, "cudnn": 0.97, "flash": 1.0, "efficient": None, "math": 3.0}})[0] is None
    noisy = {"step_ms": {"auto": 1.0, "cudnn": 0.97, "flash": 0.9, "efficient": None, "math": 3.0},
             "same_as_auto": ["flash"]}  # PyTorch's own choice, timed faster by chance
    assert best(noisy)[0] is None
    assert best({"error": "RuntimeError: no GPU"}) == (None, "no attention timings (RuntimeError: no GPU)")
    out = tmp_path / "tuning.json"
    monkeypatch.setattr(sys, "argv", ["bench_unet_tuning.py", "--quick", "--variants", "off+best+static,off",
                                      "--batches", "2", "--profile-calls", "0", "--out", str(out)])
    runpy.run_path(str(BENCH.parent / "bench_unet_tuning.py"), run_name="__main__")
    report = json.loads(out.read_text())
    assert report["attention"]["b2"]["same_as_auto"] == ["flash"]  # on the CPU PyTorch's choice is its flash kernel
    assert list(report["variants"]) == ["off+static+best", "off"]
    assert report["variants"]["off+static+best"]["skipped"].startswith("no kernel beats PyTorch's choice")
    monkeypatch.setitem(ns["_best_kernel"].__globals__, "_best_kernel", lambda attention: ("math", "forced"))
    monkeypatch.setattr(sys, "argv", ["bench_unet_tuning.py", "--quick", "--variants", "off+static+best,off+static+math",
                                      "--batches", "2", "--profile-calls", "0", "--out", str(out)])
    ns["main"]()
    report = json.loads(out.read_text())
    assert report["variants"]["off+static+best"] == {"skipped": "forced; off+static+math is listed already"}
    monkeypatch.setattr(sys, "argv", ["bench_unet_tuning.py", "--quick", "--variants", "off+static+best",
                                      "--batches", "2", "--profile-calls", "0", "--out", str(out)])
    ns["main"]()
    row = json.loads(out.read_text())["variants"]["off+static+math"]
    assert row["chosen_as"] == "off+static+best" and row["ms"]["unet_step_b2_ms"] > 0


def test_bench_fast_reads_inductor_options():
    options = runpy.run_path(str(BENCH.parent / "bench_fast.py"), run_name="fast")["inductor_options"]
    assert options("combo_kernels=1,benchmark_combo_kernel=false,combo_kernel_max_num_nodes=4,x=1.5,y=a") == {
        "combo_kernels": True, "benchmark_combo_kernel": False, "combo_kernel_max_num_nodes": 4, "x": 1.5, "y": "a"}
    assert options("") == {}
    with pytest.raises(argparse.ArgumentTypeError, match="'combo_kernels' is not name=value"):
        options("combo_kernels")


def test_bench_unet_tuning_sorts_gpu_kernels_by_kind():
    """The profile's kinds, on kernel names a Hopper GPU shows (Inductor's fused kernels name the operators they
    fused, so they are Inductor's, not convolutions)."""
    kind = runpy.run_path(str(BENCH.parent / "bench_unet_tuning.py"), run_name="tuning")["_kind"]
    assert {name: kind(name) for name in (
        "sm90_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc", "sm90_xmma_gemm_f16f16_f16f32_f32_tn_n",
        "nvjet_hsh_128x256_64x4_2x1_v_bz_coopB_NNT", "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits>",
        "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16", "triton_poi_fused_add_convolution_3",
        "triton_tem_fused_mm_1", "void at::native::elementwise_kernel<128, 2>",
        "triton_tem_fused_convolution_0", "void at::native::unrolled_elementwise_kernel<convert_fp16>")} == {
        "sm90_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc": "convolution",
        "sm90_xmma_gemm_f16f16_f16f32_f32_tn_n": "matmul", "nvjet_hsh_128x256_64x4_2x1_v_bz_coopB_NNT": "matmul",
        "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits>": "attention",
        "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16": "attention",
        "triton_poi_fused_add_convolution_3": "inductor", "triton_tem_fused_mm_1": "matmul",
        "void at::native::elementwise_kernel<128, 2>": "other", "triton_tem_fused_convolution_0": "convolution",
        "void at::native::unrolled_elementwise_kernel<convert_fp16>": "other"}


def test_bench_directions_quick_writes_json(tmp_path, monkeypatch):
    out = tmp_path / "directions.json"
    monkeypatch.setattr(sys, "argv", ["bench_directions.py", "--quick", "--out", str(out)])
    runpy.run_path(str(BENCH.parent / "bench_directions.py"), run_name="__main__")
    report = json.loads(out.read_text())
    for row in report["pca"].values():
        assert row["seconds"] > 0 and row["top_component_cosine_to_planted"] > 0.95
    assert set(report["umap"]) == {"cold_64", "warm_64", "warm_full"}
    assert report["umap"]["warm_full"]["shape"] == [1000, 1024] and report["collect"] == {}


def test_bench_discovery_quick_runs_every_step(tmp_path, monkeypatch):
    """The smoke run: every space, finder and report card on 64 samples and 2 seeds (numbers not judged)."""
    out = tmp_path / "discovery.json"
    monkeypatch.setenv("LATENTLIB_CACHE", str(tmp_path / "cache"))
    import latentlib
    import latentlib.probes
    from latentlib.shapes_model import MODEL_DIR

    model, probe = str(MODEL_DIR), str(MODEL_DIR.parent / "shapes-probe")  # the shipped ones, named as any folder
    asked = []  # what the bench loads: the folders given, not the defaults
    load, load_probe = latentlib.load, latentlib.probes.load_probe
    monkeypatch.setattr(latentlib, "load", lambda *a, **k: asked.append(("model", a)) or load(*a, **k))
    monkeypatch.setattr(latentlib.probes, "load_probe", lambda *a, **k: asked.append(("probe", a)) or load_probe(*a, **k))
    monkeypatch.setattr(sys, "argv", ["bench_discovery.py", "--quick", "--out", str(out), "--model", model,
                                      "--probe", probe])
    report = runpy.run_path(str(BENCH.parent / "bench_discovery.py"), run_name="bench")["main"]()
    assert asked == [("model", (model,)), ("probe", (probe,))]
    assert report["model"] == model and report["probe"] == probe
    assert set(report["unsupervised"]["best"]) == {"size", "x", "y", "rotation"}
    layer = report["h_layer"]
    rotation = {f"{w}: rotation{r}" for w in (f"h@{layer}", f"h@{layer} centred", "z0") for r in ("", " +-1.5")}
    assert set(report["report_cards"]) == {f"h@{layer}: {f}" for f in ("size", "x", "y")} | rotation | {
        f"h@{layer}: colour blue (logistic)", f"h@{layer}: colour blue (ridge)",
        f"h@{layer}: colour red channel (mean difference, colour-free prompts)",
        "z0: colour blue (mean difference, decoded)", "z0: colour cyan (mean difference, decoded)"}
    for fit in report["rotation_pca"].values():  # the component chosen is the best circular fit of the 8
        assert fit["circular_r"] == max(fit["circular_r_per_component"]) and -np.pi <= fit["phase"] <= np.pi
    geometry = report["colour_geometry"]  # the VAE's hue axis: every hue once, red at the negative end
    assert sorted(geometry["hue_axis"]) == sorted(shapes.COLORS) and geometry["hue_axis"]["red"] < 0
    assert 0 <= geometry["linear_r2"] <= 1 and geometry["knn_r2"] <= 1
    assert (tmp_path / "discovery_quick" / f"h_{layer}_x" / "report.md").is_file()
    assert set(report["alpha_selection"]) == {"size", "x", "y"}  # each penalty chosen on validation cards
    for chosen in report["alpha_selection"].values():
        assert f"{chosen['alpha']:g}" in chosen["validation"]
    assert f"h@{layer} (centred squares), spatial mean" in report["unsupervised"]["matrices"]
    # part 4: rotation as a turn, plain and followed, its plane and degrees chosen, then one test card each
    assert set(report["turn_cards"]) == {f"h@{layer} {n}: rotation turn{v}" for n in ("centred squares",
                                                                                       "centred large squares")
                                         for v in ("", " followed")}
    for found in report["rotation_turn"].values():  # every degree tried was scored on the validation cards
        for tag in ("plain", "followed"):
            assert sorted(found[tag]["validation"]) == sorted(f"{d:g}" for d in report["turn_degrees"])
        assert found["follow_cells"] == [8, 8] and all(0 <= v <= 1 for v in found["follow_centre"])
    for name, row in report["turn_cards"].items():  # read by the pixel meter and by the probe's rotation head
        assert row["seeds"] == 3 * report["seeds"] and row["rule_seeds"] == report["seeds"]  # the rule: the first 2
        assert (row["followed_shifted"] is None) == (not name.endswith("followed"))
        assert {"monotone_rule", "monotone_all", "probe_head_monotone_rule", "probe_head_monotone_all"} <= set(row)
        for scope, met in (("rule", row["bar_met"]), ("all", row["bar_met_all"])):  # the rule: its seeds' edits
            assert met == (row[f"monotone_{scope}"] >= 0.9 and row[f"shape_changed_{scope}"] <= 0.05
                           and row[f"background_changed_{scope}"] <= 0.05)
        assert row["shape_changed_all"] == pytest.approx(row["shape_changed"])  # all seeds: the card's summary


def test_bench_fast_records_a_failing_fast_path(tmp_path, monkeypatch):
    """A fast path that breaks is reported in the JSON (phase, error, traceback) and diffusers' figures
    are kept, so a GPU run that hits a bug still returns what it measured."""
    import latentlib as ll

    def broken(self, **flags):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(ll.Model, "accelerate", broken)
    out = tmp_path / "fast.json"
    monkeypatch.setattr(sys, "argv", ["bench_fast.py", "--quick", "--models", "sd15", "--out", str(out)])
    runpy.run_path(str(BENCH.parent / "bench_fast.py"), run_name="__main__")
    run = json.loads(out.read_text())["runs"][0]
    assert [e["phase"] for e in run["errors"]] == ["fast path (cuda_graphs=auto)"]
    assert "planted failure" in run["errors"][0]["error"] and run["errors"][0]["traceback"]
    assert run["figures"]["unet_step_b1_ms"]["diffusers_ms"] > 0
    assert run["figures"]["unet_step_b1_ms"]["latentlib_ms"] is None and run["fast_matches_eager"] == {}


def test_bench_lab_quick_writes_json(tmp_path, monkeypatch):
    script = BENCH.parent / "bench_lab.py"
    out = tmp_path / "lab.json"
    monkeypatch.setattr(sys, "argv", ["bench_lab.py", "--moves", "4", "--preview-steps", "2", "--full-steps", "3",
                                      "--encode-size", "128", "--out", str(out)])
    runpy.run_path(str(script), run_name="__main__")
    report = json.loads(out.read_text())
    for key in ("explorer", "pipeline_preview_settings", "pipeline_full_settings"):
        assert report[key]["n"] == 4 and report[key]["median_ms"] > 0
    drag = report["explorer_drag"]
    assert drag["preview_frames"] >= 1 and drag["full_frame_is_last_position"]  # the last position wins
    assert drag["stats"]["errors"] == 0
    encoding = report["frame_encoding"]
    assert encoding["size"] == 128 and all(encoding[kind][fmt] > 0 for kind in ("smooth", "noise")
                                           for fmt in ("to_pil_ms", "png_ms", "jpeg_ms"))


def test_bench_inpaint_quick_writes_json(tmp_path, monkeypatch):
    script = BENCH.parent / "bench_inpaint.py"
    out = tmp_path / "inpaint.json"
    monkeypatch.setattr(sys, "argv", ["bench_inpaint.py", "--scenes", "1", "--strength-scenes", "1", "--seam-scenes", "1",
                                      "--steps", "20", "--out", str(out)])  # 20: strength 0.05 runs one step
    runpy.run_path(str(script), run_name="__main__")
    report = json.loads(out.read_text())
    assert report["removal"]["n"] == 1 and 0 <= report["removal"]["rate"] <= 1
    assert report["preservation_max_change_outside"] <= 1  # paste-back leaves the outside alone, at any quality
    assert [row["strength"] for row in report["strength"]] == [0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert [row["feather"] for row in report["seams"]] == [0, 2, 4, 8]


def _gpu_shapes(env: dict) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(["bash", str(root / "bench" / "gpu_shapes.sh")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def test_gpu_shapes_script_dry_run_on_the_cpu(tmp_path):
    """bench/gpu_shapes.sh with PRESET=smoke DEVICE=cpu: every stage in order with its knobs, timing.json, a cut
    stage continued by RESUME=1, and refusals of bad knobs and of a resume with other knobs (the decoder stage is
    asked for here; without DECODER the script leaves it out, as the gpu preset does)."""
    knobs = ("RESUME", "WHEELS", "VAE_STEPS", "UNET_STEPS", "CAPTION_DROPOUT", "DECODER", "PROBE", "BUDGET_S",
             "EVAL_N", "OUT", "RUNS", "PRESET", "DEVICE", "PY", "HUE_SPREAD")
    env = {**{k: v for k, v in os.environ.items() if k not in knobs}, "OUT": str(tmp_path / "out"),
           "RUNS": str(tmp_path / "runs"), "PRESET": "smoke", "DEVICE": "cpu", "PY": sys.executable, "PROBE": "0",
           "UNET_STEPS": "2", "CAPTION_DROPOUT": "0.5", "EVAL_N": "8", "HUE_SPREAD": "0.5", "DECODER": "1"}
    done = _gpu_shapes(env)
    timing = json.loads((tmp_path / "out" / "timing.json").read_text())
    assert list(timing)[:5] == ["vae", "decoder", "text", "unet", "assemble"], done.stdout + done.stderr
    assert timing["finished"] is True and timing["exit_status"] == 0 and timing["with_decoder"] == 1
    log = gzip.decompress((tmp_path / "out" / "train.log.gz").read_bytes()).decode()
    assert "--decoder --no-probe --unet-steps 2 --caption-dropout 0.5 --eval-n 8 --hue-spread 0.5" in log.splitlines()[0]
    assert json.loads((tmp_path / "runs" / "model" / "world.json").read_text()) == {"hue_spread": 0.5}
    assert timing["hue_spread"] == "0.5"
    unet = json.loads((tmp_path / "runs" / "unet" / "metrics.json").read_text())
    assert unet["caption_dropout"] == 0.5 and unet["provenance"]["settings"]["steps"] == 2
    assert (tmp_path / "runs" / "model" / "model_index.json").is_file() and not (tmp_path / "runs" / "probe").exists()
    # a cut unet stage: RESUME=1 keeps the finished stages and continues the unet from its checkpoint
    (tmp_path / "runs" / "unet" / "metrics.json").unlink()
    shutil.rmtree(tmp_path / "runs" / "model")
    again = _gpu_shapes({**env, "OUT": str(tmp_path / "out2"), "RESUME": "1"})
    assert again.stdout.count("); kept") == 3, again.stdout + again.stderr
    log = gzip.decompress((tmp_path / "out2" / "train.log.gz").read_bytes()).decode()
    assert "--resume" in log.splitlines()[0]
    timing = json.loads((tmp_path / "out2" / "timing.json").read_text())
    assert list(timing)[:2] == ["unet", "assemble"] and timing["resumed"] is True and timing["finished"] is True
    # refused before anything runs
    for extra, message in (({"RESUME": "1", "UNET_STEPS": "3"}, "RESUME=1 with other knobs"),
                           ({}, "holds an earlier run"), ({"DECODER": "yes"}, "DECODER must be 0 or 1, got 'yes'"),
                           ({"VAE_STEPS": "4.5"}, "VAE_STEPS must be a whole number > 0, got '4.5'"),
                           ({"HUE_SPREAD": "2"}, "HUE_SPREAD must be a number in [0, 1], got '2'")):
        refused = _gpu_shapes({**env, "OUT": str(tmp_path / "out3"), **extra})
        assert refused.returncode == 2 and message in refused.stderr, (extra, refused.stderr)
    # DECODER left unset is 0: the knobs a resume must match say so
    no_decoder = {k: v for k, v in env.items() if k != "DECODER"}
    refused = _gpu_shapes({**no_decoder, "OUT": str(tmp_path / "out3"), "RESUME": "1"})
    assert refused.returncode == 2 and "RESUME=1 with other knobs than the run it continues: PRESET=smoke DECODER=0 " \
        in refused.stderr, refused.stderr


def test_bench_colour_quick_writes_json(tmp_path, monkeypatch):
    """The smoke run of the colour bench: samples labelled by the meter, a penalty chosen, test cards written."""
    out = tmp_path / "colour.json"
    monkeypatch.setenv("LATENTLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", ["bench_colour.py", "--quick", "--targets", "cyan", "--out", str(out)])
    report = runpy.run_path(str(BENCH.parent / "bench_colour.py"), run_name="bench")["main"]()
    from latentlib.shapes_model import MODEL_DIR, world

    assert json.loads(out.read_text())["targets"].keys() == {"cyan"} and report["world"] == world(MODEL_DIR)
    assert report["world"]["hue_spread"] > 0  # the shipped model (version 10) learned continuous hues
    assert report["backgrounds"] == ["black"] and len(report["prompts"]) == len(shapes.SHAPES)
    entry = report["targets"]["cyan"]
    assert f"{entry['alpha']:g}" in entry["validation"] and entry["ridge"]["target"] == "toward_cyan"
    assert report["bar_met"]["cyan"] == entry["ridge"]["bar_met"]
    assert (tmp_path / "colour" / "h_up_blocks.0_cyan_ridge" / "report.md").is_file()


def _no_model(*args, **kwargs):
    raise AssertionError("a refused argument must be refused before any model loads")


def test_bench_discovery_refuses_bad_arguments(capsys, monkeypatch):
    """Refused with exit code 2 and a message naming the option, before any model loads."""
    import latentlib

    monkeypatch.setattr(latentlib, "load", _no_model)
    ns = runpy.run_path(str(BENCH.parent / "bench_discovery.py"), run_name="bench")
    for argv, message in ((["--turn-variants", "plain,spun"], "--turn-variants must be plain, followed or both"),
                          (["--turn-variants", "plain,plain"], "--turn-variants must be plain, followed or both"),
                          (["--turn-variants", ","], "got ','"),
                          (["--turn-degrees", "10,x"], "--turn-degrees must be numbers > 0"),
                          (["--turn-degrees", "-5"], "--turn-degrees must be numbers > 0"),
                          (["--alphas", "1,x"], "--alphas must be numbers > 0"), (["--alphas", "0"], "got '0'"),
                          (["--window-starts", "0"], "--window-starts must be steps in 1..19, got '0'"),
                          (["--window-starts", "a"], "--window-starts must be steps in 1..19, got 'a'")):
        with pytest.raises(SystemExit) as exit_info:
            ns["main"](argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err, argv


@pytest.mark.parametrize(("extra", "strength"), [([], 0.0), (["--image-strength", "0.3"], 0.3)])
def test_bench_colour_quick_in_z0(tmp_path, monkeypatch, extra, strength):
    """--space z0: ridge on z0 with z0's own penalties; the cards edit z0 and decode directly (default) or
    re-noise each edit by --image-strength."""
    out = tmp_path / "colour.json"
    monkeypatch.setenv("LATENTLIB_CACHE", str(tmp_path / "cache"))
    report = runpy.run_path(str(BENCH.parent / "bench_colour.py"), run_name="bench")["main"](
        ["--quick", "--space", "z0", "--targets", "cyan", "--out", str(out), *extra])
    assert report["space"] == "z0" and report["h_layer"] is None and report["image_strength"] == strength
    assert report["alphas"] == [30.0]  # --quick keeps the first of z0's penalties
    card = (tmp_path / "colour" / "z0_cyan_ridge" / "report.md").read_text()
    assert '"space": "z0"' in card and f'"image_strength": {strength}' in card


def test_bench_colour_refuses_bad_arguments(capsys, monkeypatch):
    import latentlib

    monkeypatch.setattr(latentlib, "load", _no_model)
    ns = runpy.run_path(str(BENCH.parent / "bench_colour.py"), run_name="bench")
    for argv, message in ((["--targets", "teal"], "--targets: 'teal' is not one of"),
                          (["--alphas", "1,x"], "--alphas must be numbers"), (["--alphas", "-1"], "--alphas must be numbers > 0"),
                          (["--seeds", "1"], "--seeds must be 2 or more"),
                          (["--backgrounds", "black,red"], "--backgrounds: 'red' is not one of"),
                          (["--space", "xT"], "argument --space: invalid choice: 'xT'"),
                          (["--space", "z0", "--image-strength", "1"], "--image-strength must be in [0, 1); got 1"),
                          (["--image-strength", "0.3"], "--image-strength applies to --space z0, not h; got 0.3"),
                          (["--space", "z0", "--h-layer", "mid_block"], "--h-layer applies to --space h, not z0")):
        with pytest.raises(SystemExit) as exit_info:
            ns["main"](argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def _run_gpu_fast(tmp_path, **env) -> tuple[str, str]:
    """bench/gpu_fast.sh with a stand-in for python that logs its arguments (and sleeps FAKE_SD15_S for SD 1.5);
    pick_tuning.py, which needs no GPU, runs for real."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    calls, fake = tmp_path / "calls.log", tmp_path / "python"
    fake.write_text('#!/usr/bin/env bash\ncase "$*" in *pick_tuning.py*) exec "$REAL_PY" "$@";; '
                    '*"--models sd15"*) sleep "${FAKE_SD15_S:-0}";; esac\necho "$*" >> "$CALLS"\n')
    fake.chmod(0o755)
    out = tmp_path / "out"
    subprocess.run(["bash", "bench/gpu_fast.sh"], cwd=BENCH.parents[1], check=False, capture_output=True, timeout=60,
                   env={**os.environ, "PY": str(fake), "CALLS": str(calls), "OUT": str(out), "REAL_PY": sys.executable,
                        **env})
    return calls.read_text(), (out / "bench-sdxl.log").read_text()


def _tuning_report(**variants) -> dict:
    """A bench_unet_tuning JSON's variants: name -> batch-2 ms, or (ms, max_abs against eager), or an error."""
    rows = {}
    for name, value in variants.items():
        name = name.replace("__", "+").replace("_", "-")
        if value == "error":
            rows[name] = {"warmup_s": {}, "ms": {}, "vs_eager": {}, "error": "RuntimeError: broke"}
            continue
        ms, close = value if isinstance(value, tuple) else (value, 0.003)
        rows[name] = {"ms": {"unet_step_b1_ms": 4.5, "unet_step_b2_ms": ms},
                      "vs_eager": {"b1": {"max_abs": 0.003}, "b2": {"max_abs": close}}}
    return {"variants": rows}


def test_pick_tuning_takes_the_fastest_batch_2_variant_that_stays_close(tmp_path, capsys):
    pick = runpy.run_path(str(BENCH.parent / "pick_tuning.py"), run_name="pick")
    assert pick["pick"](_tuning_report(off__static=6.0, off__static__cudnn=5.7, off=6.25))[0] == "off+static+cudnn"
    assert pick["pick"](_tuning_report(off__static=6.22, off=6.25))[0] == "off"  # within the 1% margin: the default
    assert pick["pick"](_tuning_report(off__static=6.1, off__static__cudnn=5.9))[0] == "off+static+cudnn"  # no "off"
    # a failed variant, one without a batch-2 figure, one far off eager: none counts
    report = _tuning_report(off__static__cudnn="error", off__static__flash=(4.0, 0.9), off__static=6.0, off=6.25)
    report["variants"]["coordinate-descent"] = {"ms": {"unet_step_b1_ms": 4.0}, "vs_eager": {}}
    variant, why = pick["pick"](report)
    assert variant == "off+static" and "off+static 6.0 ms, off 6.25 ms" in why
    assert pick["pick"](_tuning_report(off__static=(5.0, 0.05), off=(6.25, 0.01)))[0] == "off+static"  # 5x, not 10x
    skipped = _tuning_report(off="error")
    skipped["variants"]["off+static+best"] = {"skipped": "no kernel beats PyTorch's choice"}
    with pytest.raises(ValueError, match="within tolerance .*off: failed; off[+]static[+]best: skipped"):
        pick["pick"](skipped)
    nan = _tuning_report(off__static__cudnn=(5.0, float("nan")), off=6.25)  # NaN compares False with any bound
    assert pick["pick"](json.loads(json.dumps(nan)))[0] == "off"
    timed_then_failed = _tuning_report(off__static=6.0, off=6.25)  # e.g. out of memory at a larger batch after b2
    timed_then_failed["variants"]["off+static"]["error"] = "OutOfMemoryError: at batch 8"
    assert pick["pick"](timed_then_failed)[0] == "off+static"
    assert pick["tuning_of"]("coordinate-descent+static+cudnn+combo") == {
        "AUTOTUNE": "coordinate-descent", "STATIC": "1", "ATTENTION": "cudnn", "INDUCTOR": "combo_kernels=1"}
    assert pick["tuning_of"]("off") == {"AUTOTUNE": "off", "STATIC": "", "ATTENTION": "", "INDUCTOR": ""}  # all four
    with pytest.raises(ValueError, match=r"'off\+x; rm -rf' is not a variant"):
        pick["tuning_of"]("off+x; rm -rf")
    tuning = runpy.run_path(str(BENCH.parent / "bench_unet_tuning.py"), run_name="tuning")
    assert pick["MODES"] == tuning["MODES"] and pick["KERNELS"] == tuning["KERNELS"]
    fast = runpy.run_path(str(BENCH.parent / "bench_fast.py"), run_name="fast")  # the tokens mean the same options
    assert {k: fast["inductor_options"](v) for k, v in pick["INDUCTOR"].items()} == tuning["INDUCTOR"]
    report = tmp_path / "tuning.json"
    by_batch = _tuning_report(off__static=6.5, off=6.25)
    by_batch["variants"]["off+static"]["ms"]["unet_step_b1_ms"] = 4.0
    for decide, expected in ((None, "off"), (1, "off+static")):  # the report's deciding batch, 2 without one
        report.write_text(json.dumps({**by_batch, **({} if decide is None else {"decide_batch": decide})}))
        assert pick["main"]([str(report)]) == 0
        assert f"# picked {expected} at batch {decide or 2}" in capsys.readouterr().out
    report.write_text(json.dumps(_tuning_report(off=6.25)))
    for argv, message in ((["--margin", "1"], "--margin must be in [0, 1), got 1.0"),
                          (["--tolerance", "0"], "--tolerance must be > 0, got 0.0"), (["--batch", "0"], "--batch must")):
        with pytest.raises(SystemExit):
            pick["main"]([str(report), *argv])


def test_gpu_fast_script_takes_its_flags_from_a_tuning_run(tmp_path):
    """TUNED_FROM: the second call on a warm machine runs the tuning run's winner without anyone choosing."""
    report = tmp_path / "unet_tuning.json"
    report.write_text(json.dumps(_tuning_report(off__static=6.0, off__static__cudnn=5.7, off=6.25)))
    calls, _ = _run_gpu_fast(tmp_path / "a", TUNED_FROM=str(report), SDXL_S="1", HOST_S="1")
    sd15 = next(line for line in calls.splitlines() if "--models sd15" in line)
    assert "--static-shapes" in sd15 and "--attention cudnn" in sd15 and "--autotune off" in sd15
    assert (tmp_path / "a" / "out" / "picked.txt").read_text().splitlines() == [
        "# picked off+static+cudnn at batch 2 (off+static+cudnn 5.7 ms, off+static 6.0 ms, off 6.25 ms)",
        "AUTOTUNE=off", "STATIC=1", "ATTENTION=cudnn", "INDUCTOR=''"]
    calls, _ = _run_gpu_fast(tmp_path / "b", TUNED_FROM=str(tmp_path / "missing.json"), SDXL_S="1", HOST_S="1")
    sd15 = next(line for line in calls.splitlines() if "--models sd15" in line)
    assert "--static-shapes" not in sd15 and "--attention" not in sd15  # nothing to pick from: the defaults
    assert (tmp_path / "b" / "out" / "picked.txt").read_text().splitlines() == [
        f"# nothing picked from {tmp_path / 'missing.json'}",
        f"# pick_tuning: {tmp_path / 'missing.json'} does not exist (did the tuning run write it?)"]
    report.write_text(json.dumps(_tuning_report(off__static=6.22, off=6.25)))  # off kept: the caller's flags go
    calls, _ = _run_gpu_fast(tmp_path / "c", TUNED_FROM=str(report), STATIC="1", ATTENTION="math",
                             INDUCTOR="combo_kernels=1", SDXL_S="1", HOST_S="1")
    sd15 = next(line for line in calls.splitlines() if "--models sd15" in line)
    assert "--static-shapes" not in sd15 and "--attention" not in sd15 and "--inductor" not in sd15
    assert "--autotune off" in sd15
    report.write_text(json.dumps(_tuning_report(off__static__combo=5.8, off__static=6.0, off=6.25)))
    calls, _ = _run_gpu_fast(tmp_path / "d", TUNED_FROM=str(report), SDXL_S="1", HOST_S="1")
    sd15 = next(line for line in calls.splitlines() if "--models sd15" in line)
    assert "--static-shapes" in sd15 and "--inductor combo_kernels=1" in sd15


def test_gpu_fast_script_gives_sdxl_what_is_left_of_its_time(tmp_path):
    """The prepared GPU run fits TOTAL_S (8 minutes by default): SDXL gets what SD 1.5 and the host bench leave,
    and is skipped, saying so, when that is under SDXL_MIN_S."""
    calls, _ = _run_gpu_fast(tmp_path / "a", TOTAL_S="100", HOST_S="10", SDXL_MIN_S="60")
    assert [line.split("--models ")[1].split()[0] for line in calls.splitlines() if "--models" in line] == ["sd15", "sdxl"]
    assert "bench_host.py" in calls.splitlines()[-1]
    calls, sdxl_log = _run_gpu_fast(tmp_path / "b", FAKE_SD15_S="2", TOTAL_S="12", HOST_S="5", SDXL_MIN_S="6")
    assert "--models sdxl" not in calls and "bench_host.py" in calls
    assert re.match(r"SDXL skipped: [45] s of TOTAL_S=12 left after SD 1\.5 \(SDXL_MIN_S=6\)", sdxl_log)
    calls, _ = _run_gpu_fast(tmp_path / "c", FAKE_SD15_S="2", TOTAL_S="12", HOST_S="5", SDXL_S="1")
    assert "--models sdxl" in calls  # an explicit SDXL_S is used as given


def test_gpu_tuning_script_keeps_its_json_for_the_next_call(tmp_path):
    """gpu_tuning.sh copies its JSON into KEEP (in the working tree on the GPU machine), where gpu_fast.sh's
    TUNED_FROM finds it on the next call; a run that wrote none says so."""
    fake = tmp_path / "python"
    fake.write_text('#!/usr/bin/env bash\necho tuning\nprev=\nfor a; do [ "$prev" = --out ] && [ -z "${NO_JSON:-}" ] && '
                    'echo \'{"variants": {}}\' > "$a"; prev=$a; done\n')
    fake.chmod(0o755)
    keep = tmp_path / "keep"
    (keep / "b").mkdir(parents=True)
    (keep / "b" / "unet_tuning.json").write_text("{}")  # an older run's, still in the warm machine's tree
    for case, extra in (("a", {}), ("b", {"NO_JSON": "1"})):
        done = subprocess.run(["bash", "bench/gpu_tuning.sh"], cwd=BENCH.parents[1], check=False, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "PY": str(fake), "OUT": str(tmp_path / case),
                                                          "KEEP": str(keep / case), **extra})
        assert done.returncode == 0, done.stderr
        if case == "a":
            assert json.loads((keep / "a" / "unet_tuning.json").read_text()) == {"variants": {}}
        else:
            assert not (keep / "b" / "unet_tuning.json").exists() and f"no unet_tuning.json to keep in {keep / 'b'}" \
                in done.stdout
