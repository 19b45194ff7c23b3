from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from lab import cli


def test_the_command_table_names_exactly_what_each_module_registers(capsys: pytest.CaptureFixture[str]) -> None:
    added: dict[str, str] = {}
    for module_name in dict.fromkeys(cli.COMMANDS.values()):
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module_name).register(sub)
        assert sub.choices, f"{module_name} registers no command"
        for command in sub.choices:
            added[command] = module_name
    # the lazy table and what the modules really register agree, both ways
    assert added == cli.COMMANDS
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: kubelab" in out
    for command in cli.COMMANDS:
        assert f"    {command}" in out, command
    # the lab's own commands parse and know what to run
    for command in ("up", "down", "status", "demo"):
        assert callable(cli.build_parser([command]).parse_args([command]).func)


def test_a_command_imports_only_its_own_module() -> None:
    # Each lab component is a long-lived `kubelab <command>` process: importing every other
    # component's module into it cost ~20 MB of RSS each. `-v` before the command is skipped.
    probe = (
        "import sys; from lab import cli; cli.build_parser(['-v', 'proxy', '--help-not-parsed']);"
        "print(' '.join(sorted(m for m in set(cli.COMMANDS.values()) if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["proxy.cli"]
    assert cli.command_modules(["no-such-command"]) == list(dict.fromkeys(cli.COMMANDS.values()))
    assert cli.command_modules([]) == list(dict.fromkeys(cli.COMMANDS.values()))


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: kubelab" in capsys.readouterr().out


def test_an_unknown_command_lists_the_real_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'no-such-command'" in err and "'dashboard'" in err
