"""The ``latentlib`` command: every figure kind, its help, and clear errors."""

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import torch

import latentlib as ll
from latentlib import cli, export

FAST = ["--steps", "4"]


@pytest.mark.parametrize("kind", ["grid", "strip", "sweep", "map"])
def test_every_command_has_help(kind, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["figure", kind, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "--out" in out and "--overwrite" in out and "--steps" in out


def test_grid_strip_and_sweep_write_reproducible_figures(tmp_path):
    runs = {
        "grid.png": ["grid", "--prompt", "a red circle", "--prompt", "a blue star", "--seeds", "0", "1"],
        "strip.png": ["strip", "--start", "0", "--end", "3", "--n", "3", "--prompt", "a green square"],
        "sweep.png": ["sweep", "--direction-prompts", "a small red circle", "a large red circle",
                      "--strengths", "0", "1", "--seeds", "0", "1"],
    }
    for name, argv in runs.items():
        assert cli.main(["figure", *argv, *FAST, "--out", str(tmp_path / name)]) == 0
        again = export.reproduce(tmp_path / name)
        with PIL.Image.open(tmp_path / name) as saved:
            assert np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(again.image)), name


def test_prompt_direction_reaches_the_second_prompt():
    import latentlib as ll

    model = ll.load()
    d = cli.prompt_direction(model, "a small red circle", "a large red circle")
    start, end = model.embed("a small red circle").embeds[0], model.embed("a large red circle").embeds[0]
    assert d.space == "prompt" and abs(float(d.vector.norm()) - 1) < 1e-5
    assert np.allclose(start + d.scale * d.vector, end, atol=1e-5)
    with pytest.raises(ValueError, match="embed identically"):
        cli.prompt_direction(model, "a red circle", "a red circle")


def test_map_writes_html_with_its_metadata(tmp_path, capsys):
    out = tmp_path / "map.html"
    assert cli.main(["figure", "map", "--n", "8", "--prompt", "a circle", *FAST, "--out", str(out)]) == 0
    meta = export.read_metadata(out)["latentlib"]
    assert meta["space"] == "z0" and meta["seeds"] == list(range(8)) and meta["color"] == "shape"
    assert len(meta["explained_variance_ratio"]) == 2
    assert cli.main(["figure", "map", "--n", "8", "--color", "mood", *FAST, "--out", str(tmp_path / "m2.html")]) == 2
    assert "--color 'mood' is not a probe reading" in capsys.readouterr().err


def test_errors_are_reported_without_a_traceback(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert cli.main(["figure", "grid", "--prompt", "a red circle", "--seeds", "0", *FAST, "--out", str(out)]) == 0
    assert cli.main(["figure", "grid", "--prompt", "a red circle", "--seeds", "0", *FAST, "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert cli.main(["figure", "grid", "--prompt", "a red circle", "--seeds", "0", *FAST, "--out",
                     str(tmp_path / "grid.gif")]) == 2
    assert "extension '.gif'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["figure", "strip", "--start", "zero", "--end", "1", "--out", str(tmp_path / "s.png")])
    assert "--start must be a seed" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["discover", "report-card"])
def test_discovery_commands_document_every_option(command, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for option in ("--bank", "--seed-start", "--prompts", "--probe", "--steps", "--model", "--overwrite"):
        assert option in out, option


def test_discover_then_report_card_end_to_end(tmp_path, capsys):
    """PCA with the alignment table, a supervised direction into the same bank, then its report card; a
    second identical run loads the cached samples and gives the same directions."""
    from latentlib.directions import DirectionBank

    bank = str(tmp_path / "h.safetensors")
    common = ["--space", "h", "--n", "24", "--chunk", "12", "--prompt", "a red circle", "--prompt", "a blue square",
              "--steps", "6", "--cache-dir", str(tmp_path / "cache"), "--bank", bank, "--quiet"]
    assert cli.main(["discover", *common, "--components", "3", "--align"]) == 0
    out = capsys.readouterr().out
    assert "rotation" in out and "pc2" in out
    assert cli.main(["discover", *common, "--method", "ridge", "--attribute", "x", "--timesteps", "999", "400"]) == 0
    loaded = DirectionBank.load(bank)
    assert set(loaded) == {"pc0", "pc1", "pc2", "x"} and loaded["x"].timesteps == (999.0, 400.0)
    assert set(loaded["pc0"].provenance["alignment"]) == {"size", "x", "y", "rotation"}
    assert loaded["x"].provenance["method"] == "ridge regression"
    # the same command again: refused without --overwrite (nothing written), identical with it
    assert cli.main(["discover", *common, "--method", "ridge", "--attribute", "x"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["discover", *common, "--method", "ridge", "--attribute", "x", "--overwrite"]) == 0
    again = DirectionBank.load(bank)
    assert torch.equal(again["x"].vector, loaded["x"].vector)
    card = tmp_path / "card"
    argv = ["report-card", "--bank", bank, "--direction", "x", "--seeds", "2", "--strengths", "-1", "0", "1",
            "--prompt", "a green star", "--steps", "6", "--out", str(card), "--quiet"]
    assert cli.main(argv) == 0
    assert {p.name for p in card.iterdir()} == {"summary.csv", "readings.csv", "per_seed.csv", "report.md", "report.png"}
    assert "monotone on" in capsys.readouterr().out
    assert cli.main(argv) == 2  # the folder is not empty
    assert "--overwrite" in capsys.readouterr().err
    # the angle read from the pixels, as a circular target
    rot = tmp_path / "card-rot"
    assert cli.main([*argv[:-3], "--out", str(rot), "--quiet", "--rotation-meter", "auto", "--target",
                     "rotation_angle", "--circular", "6.2832"]) == 0
    readings = pd.read_csv(rot / "readings.csv")
    angles = readings["rotation_angle"].to_numpy()
    assert len(angles) == 6 and np.all(np.isnan(angles) | (np.abs(angles) <= np.pi)) and np.isfinite(angles).any()
    assert "rotation_angle" in capsys.readouterr().out
    # h at another layer: the directions carry it, the bank records its shape, the card applies it there
    assert cli.main(["discover", *common, "--components", "2", "--name", "up", "--h-layer", "up_blocks.0"]) == 0
    layered = DirectionBank.load(bank, model=ll.load())
    assert layered["up0"].layer == "up_blocks.0" and layered["up0"].provenance["h_layer"] == "up_blocks.0"
    assert list(layered["up0"].shape) == layered.model["shapes"]["h@up_blocks.0"] != layered.model["shapes"]["h"]
    assert cli.main([*argv[:4], "up0", *argv[5:-2], str(tmp_path / "card-up"), "--quiet", "--target", "x"]) == 0
    assert cli.main(["discover", *common, "--components", "2", "--name", "no", "--h-layer", "up_blocks.7"]) == 2
    assert "`layer` 'up_blocks.7' is not a module of this UNet" in capsys.readouterr().err
    # a turn in the plane of the two up_blocks.0 components, rolled per seed to its object (--follow)
    from latentlib.directions import Turn

    layered.add(Turn.from_vectors(layered["up0"].vector, layered["up1"].vector, "h", name="spin",
                                  layer="up_blocks.0", degrees=20.0))
    layered.save(bank, overwrite=True)
    followed = tmp_path / "card-follow"
    spin = [*argv[:4], "spin", *argv[5:-2], str(followed), "--quiet", "--rotation-meter", "auto", "--target",
            "rotation_angle", "--circular", "6.2832", "--follow", "0.1", "0.9"]
    assert cli.main(spin) == 0
    per_seed = pd.read_csv(followed / "per_seed.csv")
    assert {"dy", "dx"} <= set(per_seed.columns) and len(per_seed) == 2
    # each seed's shift is its unedited object's offset from (x 0.1, y 0.9) in whole cells of the 8x8 grid
    # (the unedited image is the sweep's strength 0: a turn by 0 changes nothing)
    unedited = pd.read_csv(followed / "readings.csv").query("strength == 0").set_index("seed")
    for _, row in per_seed.iterrows():
        read = unedited.loc[row["seed"]]
        assert (row["dy"], row["dx"]) == (round((read["y"] - 0.9) * 8), round((read["x"] - 0.1) * 8))
    assert (per_seed["dy"] != per_seed["dx"]).any()  # a shift to tell rows from columns
    capsys.readouterr()
    assert cli.main([*argv[:-3], "--out", str(tmp_path / "card-x"), "--quiet", "--follow", "0.5", "0.5"]) == 2
    assert "--follow rolls a turn on its samples' grid; 'x' is a Direction in h, not a Turn" in capsys.readouterr().err
    assert not (tmp_path / "card-x").exists()  # refused before anything was written


@pytest.mark.parametrize("argv, message", [
    (["discover", "--space", "h", "--method", "ridge", "--bank", "b.safetensors"], "give --attribute"),
    (["discover", "--space", "h", "--attribute", "x", "--bank", "b.safetensors"], "--attribute is for"),
    (["discover", "--space", "xT", "--timesteps", "9", "1", "--bank", "b.safetensors"], "--timesteps applies"),
    (["discover", "--space", "z0", "--h-layer", "up_blocks.0", "--bank", "b.safetensors"], "--h-layer applies"),
    (["discover", "--space", "h", "--n", "1", "--bank", "b.safetensors"], "--n must be"),
    (["discover", "--space", "q", "--bank", "b.safetensors"], "invalid choice"),
    (["report-card", "--bank", "b.safetensors", "--direction", "x", "--strengths", "1", "2", "3", "--out", "o"],
     "including 0"),
    (["report-card", "--bank", "b.safetensors", "--direction", "x", "--circular", "-1", "--out", "o"],
     "--circular must be the target's period"),
    (["report-card", "--bank", "b.safetensors", "--direction", "x", "--rotation-meter", "hexagon", "--out", "o"],
     "invalid choice: 'hexagon'"),
    (["report-card", "--bank", "b.safetensors", "--direction", "x", "--target", "rotation_angle", "--circular", "6.2832",
      "--out", "o"], "--target rotation_angle is read by the pixel meter: add --rotation-meter"),
    (["report-card", "--bank", "b.safetensors", "--direction", "x", "--target", "rotation_angle", "--rotation-meter",
      "square", "--out", "o"], "add --circular 6.2832"),
    (["report-card", "--bank", "b.safetensors", "--direction", "x", "--follow", "0.5", "50", "--out", "o"],
     "--follow X Y must be the objects' position as fractions of the width and height (0 to 1), got 0.5 50"),
    (["report-card", "--bank", "b.safetensors", "--direction", "x", "--follow", "0.5", "--out", "o"],
     "--follow: expected 2 arguments"),
])
def test_discovery_commands_refuse_bad_arguments_with_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_bank_and_unknown_direction_exit_2(tmp_path, capsys):
    argv = ["report-card", "--bank", str(tmp_path / "none.safetensors"), "--direction", "x", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 2
    assert "no direction bank" in capsys.readouterr().err
