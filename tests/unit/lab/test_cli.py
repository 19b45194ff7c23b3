from __future__ import annotations

import argparse
import importlib

import pytest

from lab import cli


def test_every_registered_module_adds_commands_and_help_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    added: dict[str, list[str]] = {}
    for module_name in cli.COMMANDS:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module_name).register(sub)
        added[module_name] = list(sub.choices)
    assert all(added.values()), {m: c for m, c in added.items() if not c}
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: kubelab" in out
    for command in (c for cmds in added.values() for c in cmds):
        assert f"    {command}" in out, command
    # the lab's own commands parse and know what to run
    for command in ("up", "down", "status", "demo"):
        assert callable(cli.build_parser().parse_args([command]).func)


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: kubelab" in capsys.readouterr().out
