"""``dropkit`` conventions: --version, defaults in --help, usage errors, missing extras, Ctrl-C."""

from __future__ import annotations

import argparse
import sys

import pytest

import dropkit
from dropkit.cli import EXIT_INTERRUPTED, build_parser, main
from dropkit.experiments import UsageError


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"dropkit {dropkit.__version__}"


@pytest.mark.parametrize("command", ["bench", "compare", "search", "reproduce"])
def test_help_shows_every_default(command: str) -> None:
    parser = _subparsers(build_parser())[command]
    text = parser.format_help()
    assert parser.description
    for action in parser._actions:
        if not action.option_strings or action.default in (None, argparse.SUPPRESS):
            continue
        if isinstance(action, argparse._StoreTrueAction | argparse._HelpAction):
            continue
        formatter = parser._get_formatter()
        shown = formatter._get_help_string(action)  # type: ignore[attr-defined]
        assert "default" in shown, f"{command} {action.option_strings[0]}: {shown!r}"
    assert "(default: " in text


def test_usage_error_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(args: argparse.Namespace) -> int:
        raise UsageError("--data: no column 'label' in x.csv")

    monkeypatch.setattr("dropkit.cli.build_parser", _with_handler(build_parser, "bench", refuse))
    assert main(["bench"]) == 2
    err = capsys.readouterr().err
    assert err == "dropkit: error: --data: no column 'label' in x.csv\n"


def _with_handler(make, command, handler):
    def build() -> argparse.ArgumentParser:
        parser = make()
        _subparsers(parser)[command].set_defaults(handler=handler)
        return parser

    return build


@pytest.mark.parametrize(
    ("module", "extra"), [("optuna", "experiments"), ("numba", "cpu"), ("triton", "triton")]
)
def test_missing_extra_names_the_pip_install(
    module: str, extra: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def needs(args: argparse.Namespace) -> int:
        __import__(module)
        return 0

    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails as if absent
    monkeypatch.setattr("dropkit.cli.build_parser", _with_handler(build_parser, "search", needs))
    assert main(["search"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"pip install 'dropkit[{extra}]'" in err


def test_search_without_optuna_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    assert main(["search", "--dataset", "digits", "--trials", "1"]) == 2
    assert capsys.readouterr().err == (
        "dropkit: error: search needs 'optuna': pip install 'dropkit[experiments]'\n"
    )


def test_ctrl_c_in_compare_says_what_is_saved_and_resumes(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("rich")
    from dropkit.experiments import compare

    real_work = compare._work
    calls = []

    def interrupted_second(config):
        calls.append(config)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_work(config)

    monkeypatch.setattr(compare, "_work", interrupted_second)
    argv = ["compare", "--dataset", "digits", "--models", "mlp", "--techniques", "none",
            "dropout", "--seeds", "1", "--epochs", "1", "--jobs", "1",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "1 run saved" in err
    assert "rerun the same command to resume" in err
    monkeypatch.setattr(compare, "_work", real_work)
    assert main(argv) == 0
    assert "1 finished runs reused" in capsys.readouterr().out


def test_ctrl_c_elsewhere_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(
        "dropkit.cli.build_parser", _with_handler(build_parser, "bench", interrupted)
    )
    assert main(["bench"]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip() == "dropkit: interrupted"
