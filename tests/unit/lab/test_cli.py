from __future__ import annotations

import pytest

from lab import cli


def test_help_lists_only_registered_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for module in cli.COMMANDS:
        assert module  # every registered module imported and added its parser
    assert "usage: kubelab" in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: kubelab" in capsys.readouterr().out
