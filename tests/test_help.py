"""Every command-line program prints its --help (argparse formats each help string only then, so a stray '%'
in one breaks --help alone) and exits 0, listing each of its options."""

import argparse
import re
import runpy
from pathlib import Path

import pytest

from latentlib import cli, evaluate_shapes, shapes, train_shapes

BENCH = Path(__file__).resolve().parents[1] / "bench"
MODULES = {"latentlib.train_shapes": train_shapes.main, "latentlib.evaluate_shapes": evaluate_shapes.main,
           "latentlib.shapes": shapes.main}
SCRIPTS = sorted(path.name for path in BENCH.glob("bench_*.py"))


def _help(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 0
    return capsys.readouterr().out


def _listed(option: str, out: str) -> bool:
    """The option appears whole in the help (``--seed`` is not found inside ``--seeds``)."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", out) is not None


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [option for action in parser._actions for option in action.option_strings if option.startswith("--")]


def _recording(monkeypatch) -> list[argparse.ArgumentParser]:
    """Record every parser a main() builds, so the test can list the options it should print."""
    parsers = []
    original = argparse.ArgumentParser.parse_args

    def parse_args(self, *args, **kwargs):
        parsers.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    return parsers


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_help(name, capsys, monkeypatch):
    parsers = _recording(monkeypatch)
    out = _help(MODULES[name], ["--help"], capsys)
    assert parsers and len(_options(parsers[0])) > 1
    for option in _options(parsers[0]):
        assert _listed(option, out), (name, option)


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_help(script, capsys, monkeypatch):
    main = runpy.run_path(str(BENCH / script), run_name="bench")["main"]
    parsers = _recording(monkeypatch)
    out = _help(main, ["--help"], capsys)
    assert parsers and len(_options(parsers[0])) > 1
    for option in _options(parsers[0]):
        assert _listed(option, out), (script, option)


def _commands(parser: argparse.ArgumentParser, prefix=()):
    """Every leaf command of the latentlib CLI, as the argv that reaches it."""
    subparsers = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not subparsers:
        yield prefix, parser
        return
    for name, sub in subparsers[0].choices.items():
        yield from _commands(sub, (*prefix, name))


def test_cli_help_for_every_command(capsys):
    commands = list(_commands(cli._parser()))
    assert len(commands) >= 6  # figure grid/strip/sweep/map, discover, report-card
    assert _listed("--seed", "--seed N") and not _listed("--seed", "--seeds N --seed-start S")
    for argv, parser in commands:
        out = _help(cli.main, [*argv, "--help"], capsys)
        for option in _options(parser):
            assert _listed(option, out), (argv, option)
