"""The report card on cases with a known answer: a stand-in model that renders ground-truth scenes, so the
probe's readings follow the strength exactly as planted."""

import math

import numpy as np
import pytest
import torch

from latentlib import shapes
from latentlib.directions import Direction
from latentlib.probes import load_probe
from latentlib.report import border_region, report_card


class Renderer:
    """``sweep`` returns rendered scenes whose factor ``moves`` changes by ``per_unit`` per unit of strength;
    ``decode`` is the identity, so the "latents" are the pixels."""

    def __init__(self, moves="x", per_unit=0.08, recolour_at=None):
        self.moves, self.per_unit, self.recolour_at = moves, per_unit, recolour_at

    def _scene(self, seed, strength):
        base = {"shape": shapes.SHAPES[seed % 5], "color": "red", "background": "black", "size": 0.14,
                "x": 0.5, "y": 0.35 + 0.05 * (seed % 3), "rotation": 0.1}
        if self.moves is not None:
            base[self.moves] += self.per_unit * strength
        if self.recolour_at is not None and strength >= self.recolour_at:
            base["color"] = "blue"
        return shapes.Scene(**base)

    def sweep(self, prompt, direction, strengths, *, seed, output, **kwargs):
        assert output == "latent"
        pics = [np.asarray(shapes.render(self._scene(seed, s)), dtype=np.float32) / 255 for s in strengths]
        return torch.from_numpy(np.stack(pics)).permute(0, 3, 1, 2)

    def decode(self, latents, output):
        assert output == "pt"
        return latents


DIRECTION = Direction.from_vector(torch.ones(4, 8, 8), "xT", name="x")
STRENGTHS = [-2, -1, 0, 1, 2]


@pytest.fixture(scope="module")
def probe():
    return load_probe()


def test_a_planted_move_scores_monotone_linear_and_clean(probe):
    card = report_card(Renderer("x"), DIRECTION, probe, strengths=STRENGTHS, seeds=6, progress=False)
    t = card.target_row
    assert card.target == "x" and list(card.summary.index)[0] == "x"
    assert t["monotone_share"] == 1.0 and t["sign_share"] == 1.0 and t["spearman_median"] == pytest.approx(1.0)
    assert t["effect_per_unit"] == pytest.approx(0.08, abs=0.015)  # the planted 0.08 per unit, read by the probe
    assert t["linearity_r2"] > 0.97 and abs(t["saturation"]) < 0.3
    s = card.summary
    assert s.loc["shape", "changed_share"] == 0 and s.loc["background", "changed_share"] == 0
    assert s.loc["color", "changed_share"] == 0
    assert abs(s.loc["y", "effect_per_unit"]) < 0.01 and abs(s.loc["size", "effect_per_unit"]) < 0.01
    # the object moves over a black background: nothing changes outside it
    assert t["pixel_change_outside"] < 0.01
    assert card.images.shape == (6, 5, 3, 64, 64) and len(card.readings) == 30
    # the same move scored with the expected sign flipped is never monotone
    flipped = report_card(Renderer("x"), Direction.from_vector(torch.ones(4, 8, 8), "xT", name="x"), probe,
                          strengths=STRENGTHS, seeds=2, expected_sign=-1, progress=False)
    assert flipped.target_row["monotone_share"] == 0 and flipped.target_row["sign_share"] == 0


def test_a_direction_that_does_nothing_and_one_that_leaks(probe):
    d = Direction.from_vector(torch.ones(4, 8, 8), "xT", name="size")
    idle = report_card(Renderer(None), d, probe, strengths=STRENGTHS, seeds=3, progress=False)
    t = idle.target_row
    assert abs(t["effect_per_unit"]) < 0.003 and t["monotone_share"] == 0 and t["latent_change"] == 0
    leaky = report_card(Renderer("size", 0.015, recolour_at=1), d, probe, strengths=STRENGTHS, seeds=3, progress=False)
    assert leaky.target_row["monotone_share"] == 1.0
    assert leaky.summary.loc["color", "changed_share"] == pytest.approx(0.5)  # strengths 1 and 2 of the 4 edits
    # a class probability as the target
    blue = report_card(Renderer(None, recolour_at=1), d, probe, target="color=blue", strengths=STRENGTHS, seeds=2,
                       progress=False)
    assert blue.target_row["sign_share"] == 1.0 and blue.target_row["effect_per_unit"] > 0.1


def test_saving_writes_every_file_and_keeps_what_exists(probe, tmp_path):
    card = report_card(Renderer("y"), Direction.from_vector(torch.ones(4, 8, 8), "xT", name="y"), probe,
                       strengths=[-1, 0, 1], seeds=2, progress=False)
    paths = card.save(tmp_path / "card")
    assert {p.name for p in paths.values()} == {"summary.csv", "readings.csv", "per_seed.csv", "report.md", "report.png"}
    md = (tmp_path / "card" / "report.md").read_text()
    assert "Report card: y" in md and "| background |" in md
    with pytest.raises(FileExistsError, match="overwrite"):
        card.save(tmp_path / "card")
    card.save(tmp_path / "card", overwrite=True, figure_format="svg")
    import pandas as pd

    back = pd.read_csv(tmp_path / "card" / "summary.csv", index_col=0)
    assert back.loc["y", "monotone_share"] == 1.0


def test_border_region_finds_the_object():
    scene = shapes.Scene(shape="square", color="yellow", background="black", size=0.2, x=0.5, y=0.5, rotation=0.0)
    img = torch.from_numpy(np.asarray(shapes.render(scene), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    mask = border_region(img)[0]
    side = 2 * 0.2 * 64 / math.sqrt(2)  # the square's half-diagonal is size x side
    assert abs(float(mask.sum()) - side**2) < 0.25 * side**2
    assert not mask[0].any() and bool(mask[32, 32])


def test_bad_arguments_are_named(probe):
    d = Direction.from_vector(torch.ones(4, 8, 8), "xT", name="x")
    with pytest.raises(ValueError, match="including 0"):
        report_card(Renderer(), d, probe, strengths=[-1, 1, 2])
    with pytest.raises(ValueError, match="expected_sign"):
        report_card(Renderer(), d, probe, expected_sign=2)
    with pytest.raises(ValueError, match="not a continuous probe reading"):
        report_card(Renderer(), d, probe, target="shape", strengths=[-1, 0, 1], seeds=1, progress=False)
    with pytest.raises(ValueError, match="no class 'teal'"):
        report_card(Renderer(), d, probe, target="color=teal", strengths=[-1, 0, 1], seeds=1, progress=False)
    with pytest.raises(ValueError, match="seeds"):
        report_card(Renderer(), d, probe, seeds=0)
    with pytest.raises(ValueError, match="prompts"):
        report_card(Renderer(), d, probe, seeds=3, prompts=[])
