"""The training command: files it writes, refusal to overwrite, and resume = uninterrupted run."""

import argparse
import csv
import dataclasses
import json

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file

from latentlib import shapes, train_shapes


def _run(out, *extra):
    return train_shapes.main(["probe", "--out", str(out), "--preset", "smoke", "--eval-n", "8", *extra])


def test_smoke_run_writes_weights_log_curve_and_metrics(tmp_path):
    metrics = _run(tmp_path / "run")
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"probe.safetensors", "config.json", "loss.csv", "metrics.json"} <= files
    assert "checkpoint.safetensors" not in files  # removed once the run finished
    rows = list(csv.DictReader(open(tmp_path / "run" / "loss.csv")))
    assert [int(r["step"]) for r in rows] == [0, 2, 4, 5]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["provenance"]["preset"] == "smoke" and saved["provenance"]["seed"] == 0
    assert "shape_accuracy" in metrics["test"]
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        _run(tmp_path / "run")


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    _run(tmp_path / "straight")
    stopped = _run(tmp_path / "resumed", "--stop-after", "4")
    assert stopped == {"stopped_at": 4}
    assert (tmp_path / "resumed" / "checkpoint.safetensors").exists()
    _run(tmp_path / "resumed", "--resume")
    a = load_file(tmp_path / "straight" / "probe.safetensors")
    b = load_file(tmp_path / "resumed" / "probe.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rows = list(csv.DictReader(open(tmp_path / "resumed" / "loss.csv")))
    assert [int(r["step"]) for r in rows] == [0, 2, 4, 5]


def test_an_earlier_run_is_not_clobbered(tmp_path):
    _run(tmp_path / "run", "--stop-after", "2")
    with pytest.raises(SystemExit, match="holds an earlier run; pass --resume"):
        _run(tmp_path / "run")


def test_resume_drops_log_rows_after_the_checkpoint(tmp_path):
    _run(tmp_path / "run", "--stop-after", "3")  # checkpoint at 3 (smoke preset: every 3 steps)
    with open(tmp_path / "run" / "loss.csv", "a") as f:  # as if step 4 had been logged before a crash
        f.write("4,9.9,0.001,,,,,,,,\n")
    _run(tmp_path / "run", "--resume")
    rows = list(csv.DictReader(open(tmp_path / "run" / "loss.csv")))
    assert [int(r["step"]) for r in rows] == [0, 2, 4, 5] and float(rows[2]["loss"]) != 9.9


def test_all_stages_smoke_run_builds_a_loadable_model(tmp_path):
    from diffusers import StableDiffusionPipeline

    import latentlib as ll

    # --workers 2: every stage's data built in worker processes (the test below checks it is the same data)
    results = train_shapes.main(["all", "--out", str(tmp_path / "run"), "--preset", "smoke", "--eval-n", "8",
                                 "--workers", "2"])
    assert set(results) == {"vae", "text", "unet", "assemble", "probe"}  # the decoder stage is opt-in
    model_dir = tmp_path / "run" / "model"
    pipe = StableDiffusionPipeline.from_pretrained(model_dir)
    assert pipe.vae_scale_factor == 8
    model = ll.load(model_dir)
    assert model.generate("a red circle", seed=0, steps=2, output="np", progress=False).shape == (1, 64, 64, 3)
    for stage in ("vae", "text", "unet"):
        saved = json.loads((tmp_path / "run" / stage / "metrics.json").read_text())
        assert saved["provenance"]["command"].startswith("python -m latentlib.train_shapes all")
        assert (tmp_path / "run" / stage / "loss.csv").exists()
    assert "psnr_mean_db" in results["vae"]["test"]
    assert set(results["text"]["caption_factor_accuracy"]["test"]) >= {"shape", "color", "background"}

    # `all --resume` after an interruption: finished stages are kept, the cut one goes on from its
    # checkpoint, and without workers the run is the one above (same data, same seeds)
    common = ["all", "--out", str(tmp_path / "cut"), "--preset", "smoke", "--eval-n", "8", "--workers", "0"]
    assert train_shapes.main([*common, "--stop-after", "3"]) == {"vae": {"stopped_at": 3}}
    resumed = train_shapes.main([*common, "--resume"])
    assert set(resumed) == set(results) and "kept" not in resumed["vae"]
    for part in ("vae/diffusion_pytorch_model.safetensors", "text/text_encoder/model.safetensors",
                 "unet/unet/diffusion_pytorch_model.safetensors", "probe/probe.safetensors"):
        a, b = load_file(tmp_path / "run" / part), load_file(tmp_path / "cut" / part)
        assert a.keys() == b.keys()
        for key in a:  # kernels after a reload may differ in the last bits (see the unet resume test)
            assert torch.allclose(a[key], b[key], rtol=0, atol=1e-6), (part, key)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "cut").rglob("*") if p.is_file()}
    again = train_shapes.main([*common, "--resume"])
    assert all("kept" in result for result in again.values())
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "cut").rglob("*") if p.is_file()}


def test_unet_stage_resume_gives_the_same_weights(tmp_path):
    train_shapes.main(["vae", "--out", str(tmp_path / "vae"), "--preset", "smoke", "--eval-n", "8"])
    train_shapes.main(["text", "--out", str(tmp_path / "text"), "--preset", "smoke", "--eval-n", "8"])
    common = ["--preset", "smoke", "--vae", str(tmp_path / "vae"), "--text", str(tmp_path / "text")]
    train_shapes.main(["unet", "--out", str(tmp_path / "straight"), *common])
    assert train_shapes.main(["unet", "--out", str(tmp_path / "resumed"), *common, "--stop-after", "3"]) == {"stopped_at": 3}
    train_shapes.main(["unet", "--out", str(tmp_path / "resumed"), *common, "--resume"])
    a = load_file(tmp_path / "straight" / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "resumed" / "unet" / "diffusion_pytorch_model.safetensors")
    # Same data, noise and optimiser state; the UNet's kernels after a reload differ in the last bits
    # (observed: <= 2e-8), unlike the probe's, which resume bit for bit.
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-6), key
    untouched = train_shapes.main(["unet", "--out", str(tmp_path / "fresh"), *common, "--steps", "2"])
    c = load_file(tmp_path / "fresh" / "unet" / "diffusion_pytorch_model.safetensors")
    assert untouched["provenance"]["settings"]["steps"] == 2  # what ran: --steps replaces the preset's 6
    assert untouched["provenance"]["command"].endswith("--steps 2")
    assert any((a[key] - c[key]).abs().max() > 1e-4 for key in a)  # a shorter run is really different
    gentle = train_shapes.main(["unet", "--out", str(tmp_path / "gentle"), *common, "--steps", "2", "--lr", "1e-5"])
    d = load_file(tmp_path / "gentle" / "unet" / "diffusion_pytorch_model.safetensors")
    assert gentle["provenance"]["settings"]["lr"] == 1e-5  # the preset's 1e-3, replaced and recorded
    assert any((c[key] - d[key]).abs().max() > 1e-4 for key in c)  # and it is the learning rate that ran


def test_unet_stage_options_caption_dropout_and_bf16_autocast(tmp_path, capsys):
    train_shapes.main(["vae", "--out", str(tmp_path / "vae"), "--preset", "smoke", "--eval-n", "8"])
    train_shapes.main(["text", "--out", str(tmp_path / "text"), "--preset", "smoke", "--eval-n", "8"])
    common = ["--preset", "smoke", "--vae", str(tmp_path / "vae"), "--text", str(tmp_path / "text"), "--steps", "2"]
    plain = train_shapes.main(["unet", "--out", str(tmp_path / "plain"), *common])
    dropped = train_shapes.main(["unet", "--out", str(tmp_path / "dropped"), *common, "--caption-dropout", "0.9"])
    assert plain["caption_dropout"] == 0.0 and dropped["caption_dropout"] == 0.9
    a = load_file(tmp_path / "plain" / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "dropped" / "unet" / "diffusion_pytorch_model.safetensors")
    assert any((a[key] - b[key]).abs().max() > 1e-6 for key in a)
    scenes = [shapes.sample_scene(s) for s in range(40)]
    texts = [shapes.caption(scene, s) for s, scene in enumerate(scenes)]
    kept = train_shapes._drop_captions(texts, scenes, [True] * 40)
    assert any(not scene.present for scene in scenes)  # the check below has empty scenes to look at
    assert kept == ["" if scene.present else text for scene, text in zip(scenes, texts, strict=True)]
    for bad in ("1", "-0.5", "nan"):
        with pytest.raises(SystemExit):
            train_shapes.main(["unet", "--out", "unused", "--caption-dropout", bad])
        assert "--caption-dropout must be in [0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_shapes.main(["vae", "--out", "unused", "--caption-dropout", "0.2"])
    assert "applies to the unet stage" in capsys.readouterr().err
    # --amp bf16: the forward pass under bfloat16 autocast, float32 weights, recorded in the metrics
    mixed = train_shapes.main(["unet", "--out", str(tmp_path / "bf16"), *common, "--amp", "bf16"])
    assert plain["amp"] == "off" and mixed["amp"] == "bf16"
    m = load_file(tmp_path / "bf16" / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(v.dtype == a[k].dtype and torch.isfinite(v).all() for k, v in m.items())
    assert any((a[key] - m[key]).abs().max() > 0 for key in a)  # bfloat16 rounding changed the updates
    with pytest.raises(SystemExit):
        train_shapes.main(["text", "--out", "unused", "--amp", "bf16"])
    assert "--amp applies to the vae, decoder and unet stages" in capsys.readouterr().err


def test_a_presets_caption_dropout_runs_unless_the_flag_replaces_it(tmp_path, monkeypatch):
    train_shapes.main(["vae", "--out", str(tmp_path / "vae"), "--preset", "smoke", "--eval-n", "8"])
    train_shapes.main(["text", "--out", str(tmp_path / "text"), "--preset", "smoke", "--eval-n", "8"])
    common = ["--preset", "smoke", "--vae", str(tmp_path / "vae"), "--text", str(tmp_path / "text"), "--steps", "2"]
    train_shapes.main(["unet", "--out", str(tmp_path / "flag"), *common, "--caption-dropout", "0.9"])
    smoke = train_shapes.PRESETS["unet"]["smoke"]
    monkeypatch.setitem(train_shapes.PRESETS["unet"], "smoke", dataclasses.replace(smoke, caption_dropout=0.9))
    preset = train_shapes.main(["unet", "--out", str(tmp_path / "preset"), *common])
    off = train_shapes.main(["unet", "--out", str(tmp_path / "off"), *common, "--caption-dropout", "0"])
    assert preset["caption_dropout"] == 0.9 and preset["provenance"]["settings"]["caption_dropout"] == 0.9
    assert off["caption_dropout"] == 0.0
    weights = {name: load_file(tmp_path / name / "unet" / "diffusion_pytorch_model.safetensors")
               for name in ("flag", "preset", "off")}
    assert all(torch.equal(weights["flag"][k], v) for k, v in weights["preset"].items())  # the same run
    assert any(not torch.equal(weights["off"][k], v) for k, v in weights["preset"].items())


def test_all_hands_each_stage_only_the_options_it_uses(tmp_path, capsys):
    # `all` passes one set of options to every stage; each stage's preset (recorded in its metrics) keeps
    # --amp only where it runs (vae, decoder, unet) and --caption-dropout only in the unet stage
    for stage in ("vae", "decoder", "text", "unet", "probe"):
        args = argparse.Namespace(out=str(tmp_path / stage), preset="smoke", amp="bf16", caption_dropout=0.5,
                                  lr=None, steps=None, resume=False, overwrite=False)
        preset, _, _ = train_shapes._stage(stage, args, "final")
        assert preset.amp == ("bf16" if stage in ("vae", "decoder", "unet") else "off"), stage
        assert preset.caption_dropout == (0.5 if stage == "unet" else 0.0), stage
    for argv, message in ((["unet", "--unet-steps", "3"], "--unet-steps applies to all"),
                          (["vae", "--no-probe"], "--no-probe applies to all"),
                          (["all", "--vae-steps", "0"], "--vae-steps must be 1 or more; got 0")):
        with pytest.raises(SystemExit):
            train_shapes.main([*argv, "--out", str(tmp_path / "unused")])
        assert message in capsys.readouterr().err


def test_amp_trains_the_vae_and_decoder_in_bfloat16(tmp_path):
    smoke = ["--preset", "smoke", "--eval-n", "8"]
    plain = train_shapes.main(["vae", "--out", str(tmp_path / "plain"), *smoke])
    mixed = train_shapes.main(["vae", "--out", str(tmp_path / "bf16"), *smoke, "--amp", "bf16"])
    assert plain["provenance"]["settings"]["amp"] == "off" and mixed["provenance"]["settings"]["amp"] == "bf16"
    a = load_file(tmp_path / "plain" / "diffusion_pytorch_model.safetensors")
    m = load_file(tmp_path / "bf16" / "diffusion_pytorch_model.safetensors")
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in m.values())
    assert any((a[key] - m[key]).abs().max() > 0 for key in a)  # bfloat16 rounding changed the updates
    decoded = train_shapes.main(["decoder", "--out", str(tmp_path / "dec"), "--vae", str(tmp_path / "plain"),
                                 *smoke, "--amp", "bf16"])
    assert decoded["provenance"]["settings"]["amp"] == "bf16"
    assert decoded["vae_encoder"] == train_shapes.encoder_fingerprint(AutoencoderKL.from_pretrained(tmp_path / "plain"))


def test_lr_flag_rejects_bad_values(capsys):
    for bad in ("0", "-0.001", "nan"):
        with pytest.raises(SystemExit) as exit_info:
            train_shapes.main(["unet", "--out", "unused", "--lr", bad])
        assert exit_info.value.code == 2
        assert f"--lr must be a positive number; got {float(bad)}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_shapes.main(["all", "--out", "unused", "--lr", "1e-4"])
    assert "--lr applies to one stage" in capsys.readouterr().err


def test_decoder_keeps_latents_and_assemble_refuses_a_foreign_vae(tmp_path):
    from diffusers import AutoencoderKL

    run = tmp_path / "run"
    results = train_shapes.main(["all", "--out", str(run), "--preset", "smoke", "--eval-n", "8", "--decoder"])
    assert list(results) == ["vae", "decoder", "text", "unet", "assemble", "probe"]
    with pytest.raises(SystemExit):
        train_shapes.main(["vae", "--out", str(tmp_path / "v"), "--preset", "smoke", "--decoder"])
    vae, decoder = AutoencoderKL.from_pretrained(run / "vae"), AutoencoderKL.from_pretrained(run / "decoder")
    assert train_shapes.encoder_fingerprint(vae) == train_shapes.encoder_fingerprint(decoder)
    assert not torch.equal(vae.decoder.conv_out.weight, decoder.decoder.conv_out.weight)  # the decoder did train
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(vae.encode(x).latent_dist.mean, decoder.encode(x).latent_dist.mean)
    train_shapes.main(["vae", "--out", str(tmp_path / "other"), "--preset", "smoke", "--seed", "1", "--eval-n", "8"])
    with pytest.raises(SystemExit, match="does not encode the latents"):
        train_shapes.main(["assemble", "--out", str(tmp_path / "m"), "--vae", str(tmp_path / "other"),
                           "--text", str(run / "text"), "--unet", str(run / "unet")])
    with pytest.raises(SystemExit, match="already holds a model"):
        train_shapes.main(["assemble", "--out", str(run / "model"), "--vae", str(run / "decoder"),
                           "--text", str(run / "text"), "--unet", str(run / "unet")])


def test_unet_stage_can_start_from_a_trained_unet(tmp_path):
    train_shapes.main(["vae", "--out", str(tmp_path / "vae"), "--preset", "smoke", "--eval-n", "8"])
    train_shapes.main(["text", "--out", str(tmp_path / "text"), "--preset", "smoke", "--eval-n", "8"])
    common = ["--preset", "smoke", "--vae", str(tmp_path / "vae"), "--text", str(tmp_path / "text")]
    train_shapes.main(["unet", "--out", str(tmp_path / "first"), *common])
    more = train_shapes.main(["unet", "--out", str(tmp_path / "more"), *common, "--init", str(tmp_path / "first"),
                              "--steps", "1"])
    assert more["init"] == str(tmp_path / "first")
    a = load_file(tmp_path / "first" / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "more" / "unet" / "diffusion_pytorch_model.safetensors")
    fresh = train_shapes.main(["unet", "--out", str(tmp_path / "fresh"), *common, "--steps", "1"])
    c = load_file(tmp_path / "fresh" / "unet" / "diffusion_pytorch_model.safetensors")
    gap = lambda x, y: max((x[k] - y[k]).abs().max().item() for k in x)  # noqa: E731
    assert fresh["init"] is None and gap(a, b) < gap(a, c)  # one more step stays near where it started


def test_unet_stage_needs_its_inputs(tmp_path):
    with pytest.raises(SystemExit, match="needs --vae"):
        train_shapes.main(["unet", "--out", str(tmp_path / "u"), "--preset", "smoke"])


def test_object_weights_favour_the_object_and_keep_the_loss_scale():
    from latentlib import shapes

    scene = shapes.Scene(shape="square", color="red", background="black", size=0.25, x=0.5, y=0.5, rotation=0.0)
    image = torch.from_numpy(__import__("numpy").asarray(shapes.render(scene, 64))).permute(2, 0, 1)[None].float()
    x = image / 127.5 - 1
    labels = [{"background": "black"}]
    w = train_shapes.object_weights(x, labels, 9.0, grow=0)
    on, off = (image[0, 0] == 220), (image[0] == 15).all(0)  # object interior, plain background
    assert w.shape == (1, 1, 64, 64)
    assert torch.allclose(w.mean(), torch.tensor(1.0))
    assert on.sum() > 100 and off.sum() > 2000
    assert torch.allclose(w[0, 0][on].min() / w[0, 0][off].max(), torch.tensor(10.0))
    assert torch.equal(train_shapes.object_weights(x, labels, 0.0), torch.ones(1, 1, 64, 64))


def test_hue_spread_reaches_every_stage_and_the_model_records_its_world(tmp_path, capsys):
    from latentlib import shapes_model

    common = ["--preset", "smoke", "--eval-n", "8", "--hue-spread", "0.5"]
    train_shapes.main(["vae", "--out", str(tmp_path / "vae"), *common])
    train_shapes.main(["text", "--out", str(tmp_path / "text"), "--preset", "smoke", "--eval-n", "8"])
    unet = train_shapes.main(["unet", "--out", str(tmp_path / "unet"), *common, "--vae", str(tmp_path / "vae"),
                              "--text", str(tmp_path / "text")])
    assert unet["provenance"]["hue_spread"] == 0.5
    assert load_file(tmp_path / "unet" / "latents.safetensors")["hue_spread"].item() == 0.5
    # the latents are those of the spread world's scenes (scene 0 is an object: its colour differs)
    vae = AutoencoderKL.from_pretrained(tmp_path / "vae")
    discrete = train_shapes._encode_scenes(vae, 2, "cpu")
    assert torch.allclose(train_shapes._encode_scenes(vae, 2, "cpu", hue_spread=0.5),
                          load_file(tmp_path / "unet" / "latents.safetensors")["latents"][:2], atol=1e-5)
    assert not torch.allclose(discrete[0], load_file(tmp_path / "unet" / "latents.safetensors")["latents"][0])
    train_shapes.main(["assemble", "--out", str(tmp_path / "model"), "--vae", str(tmp_path / "vae"),
                       "--text", str(tmp_path / "text"), "--unet", str(tmp_path / "unet")])
    assert shapes_model.world(tmp_path / "model") == {"hue_spread": 0.5}
    assert shapes_model.world(tmp_path) == {"hue_spread": 0.0}  # no world.json: the discrete world
    assert "note: the VAE" not in capsys.readouterr().err
    # a UNet of the discrete world on this VAE: assembled (the VAE encodes its latents), the mix said aloud
    train_shapes.main(["unet", "--out", str(tmp_path / "unet0"), "--preset", "smoke", "--eval-n", "8",
                       "--vae", str(tmp_path / "vae"), "--text", str(tmp_path / "text")])
    train_shapes.main(["assemble", "--out", str(tmp_path / "model0"), "--vae", str(tmp_path / "vae"),
                       "--text", str(tmp_path / "text"), "--unet", str(tmp_path / "unet0")])
    assert shapes_model.world(tmp_path / "model0") == {"hue_spread": 0.0}
    assert "was trained on hue_spread 0.5, the UNet in" in capsys.readouterr().err
    # the probe continues a finished one and is scored on the spread world
    first = train_shapes.main(["probe", "--out", str(tmp_path / "p1"), "--preset", "smoke", "--eval-n", "8", "--seed", "1"])
    more = train_shapes.main(["probe", "--out", str(tmp_path / "p2"), *common, "--init", str(tmp_path / "p1")])
    fresh = train_shapes.main(["probe", "--out", str(tmp_path / "p3"), *common])
    assert first["test"]["hue_spread"] == 0.0 and more["test"]["hue_spread"] == 0.5
    assert more["init"] == str(tmp_path / "p1") and fresh["init"] is None
    a, b, c = (load_file(tmp_path / name / "probe.safetensors") for name in ("p1", "p2", "p3"))
    gap = lambda x, y: max((x[k] - y[k]).abs().max().item() for k in x)
    assert 0 < gap(a, b) < gap(a, c)  # it trained, from where the first one ended


def test_a_run_goes_on_in_the_world_it_began_in(tmp_path):
    common = ["--preset", "smoke", "--eval-n", "8"]
    train_shapes.main(["vae", "--out", str(tmp_path / "vae"), *common, "--stop-after", "3"])
    with pytest.raises(SystemExit, match=r"was trained with --hue-spread 0; resume it with the same, not 0.5"):
        train_shapes.main(["vae", "--out", str(tmp_path / "vae"), *common, "--resume", "--hue-spread", "0.5"])
    train_shapes.main(["all", "--out", str(tmp_path / "all"), *common, "--no-probe", "--stop-after", "3"])  # vae cut
    train_shapes.main(["all", "--out", str(tmp_path / "all"), *common, "--no-probe", "--resume"])  # every stage
    (tmp_path / "all" / "model" / "model_index.json").unlink()
    with pytest.raises(SystemExit, match=r"all.vae was trained with --hue-spread 0; `all --resume` continues with "
                                         r"the same, not 0.5"):
        train_shapes.main(["all", "--out", str(tmp_path / "all"), *common, "--no-probe", "--resume",
                           "--hue-spread", "0.5"])


def test_hue_spread_and_init_flags_are_checked(tmp_path, capsys):
    for argv, message in ((["vae", "--hue-spread", "1.5"], "--hue-spread must be in [0, 1]"),
                          (["vae", "--init", "x"], "--init applies to the unet and probe stages"),
                          (["probe", "--init", str(tmp_path)], f"--init {str(tmp_path)!r}: the probe stage continues")):
        with pytest.raises(SystemExit) as exit_info:
            train_shapes.main([*argv, "--out", str(tmp_path / "x"), "--preset", "smoke"])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
