"""The packaging promises: conda and pip name the same dependencies; the README's commands are the ones CI runs."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PYPI = {"pytorch": "torch", "huggingface_hub": "huggingface-hub", "python-kaleido": "kaleido"}


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", requirement.strip()).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_split(r) for r in project["dependencies"] + project["optional-dependencies"]["lab"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    conda = {}
    pip_section = None
    for item in env["dependencies"]:
        if isinstance(item, dict):
            pip_section = item["pip"]
            continue
        name, spec = _split(item)
        if name in ("python", "pip"):
            continue
        conda[CONDA_TO_PYPI.get(name, name).replace("_", "-")] = spec
    assert conda == wanted
    assert pip_section == ["-e ."]  # the project itself comes through pip


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, flags=re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert "notebooks/00_tour.ipynb" in makefile and (ROOT / "notebooks" / "00_tour.ipynb").is_file()
    assert re.search(r"^test: .*\n\t.*pytest tests notebooks --nbmake", makefile, flags=re.M)


def test_public_api_names_exist():
    import latentlib as ll

    for name in ("load", "Model", "slerp", "lerp", "PromptEmbedding", "SCHEDULERS", "Step", "mix"):
        assert hasattr(ll, name), name
    for method in ("encode", "decode", "noise", "embed", "generate"):
        assert callable(getattr(ll.Model, method))


def test_package_data_covers_every_shipped_weight_file():
    """A non-editable install must carry the default model and probe: every file under weights/ matches."""
    import fnmatch

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["latentlib"]
    files = [p.relative_to(root / "latentlib").as_posix() for p in (root / "latentlib" / "weights").rglob("*") if p.is_file()]
    assert any(f.endswith(".safetensors") for f in files)
    missed = [f for f in files if not any(fnmatch.fnmatchcase(f, pat) and f.count("/") == pat.count("/") for pat in patterns)]
    assert missed == []
