"""The training command: files it writes, refusal to overwrite, and resume = uninterrupted run."""

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from latentlib import train_shapes


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
