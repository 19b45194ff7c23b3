"""``kubelab store``: read-only inspection of a sqlite store, also while its owner has it open."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from controlplane.storage import cli
from controlplane.storage.sqlite import SqliteStore


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["store", *argv])


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.run(parse(*argv), out)
    return code, out.getvalue()


def test_keys_get_and_log_while_the_store_is_open(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")  # the "API server" holds it open
    try:
        r1 = store.create("/registry/pods/default/web", b'{"kind":"Pod","metadata":{"name":"web"}}')
        r2 = store.update("/registry/pods/default/web", b'{"kind":"Pod","metadata":{"name":"web2"}}', r1)
        r3 = store.create("/registry/pods/default/gone", b"{}")
        _, r4 = store.delete("/registry/pods/default/gone")
        d = str(tmp_path)

        code, out = run("--data-dir", d, "keys")
        assert code == 0
        assert f"# revision {r4}" in out
        rows = [line.split() for line in out.splitlines()[2:]]
        assert rows == [[str(r1), str(r2), "41", "/registry/pods/default/web"]]

        code, out = run("--data-dir", d, "get", "/registry/pods/default/web")
        assert code == 0 and f"mod_revision {r2}" in out and '"name": "web2"' in out

        code, out = run("--data-dir", d, "log", "--since", str(r1))
        assert [line.split() for line in out.splitlines()] == [
            [str(r2), "UPDATE", "/registry/pods/default/web"],
            [str(r3), "CREATE", "/registry/pods/default/gone"],
            [str(r4), "DELETE", "/registry/pods/default/gone"],
        ]
        # Reading changed nothing.
        assert store.current_revision() == r4
    finally:
        store.close()


def test_missing_things_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run("--data-dir", str(tmp_path / "nowhere"), "keys")
    assert code == 1 and "no store at" in capsys.readouterr().err
    SqliteStore(tmp_path / "state.db").close()
    code, _ = run("--data-dir", str(tmp_path), "get", "/registry/pods/default/nope")
    assert code == 1 and "not found" in capsys.readouterr().err
    code, _ = run("--store", "etcd", "keys")
    assert code == 1 and "needs --etcd-endpoints" in capsys.readouterr().err
