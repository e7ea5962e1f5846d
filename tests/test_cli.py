"""The ``latentlib`` command: every figure kind, its help, and clear errors."""

import numpy as np
import PIL.Image
import pytest

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
