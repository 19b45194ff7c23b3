"""``make bench``: run every ``tests/bench/bench_*.py`` (each prints its own Markdown table).

``python -m tests.bench [NAME ...]`` runs only the named ones (``cni``, ``proxy`` …). Each runs in
its own process so one benchmark's state (namespaces, servers) cannot colour another's figures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(p.stem for p in here.glob("bench_*.py"))
    wanted = [a for a in argv if not a.startswith("-")]
    if wanted:
        names = [n for n in names if n.removeprefix("bench_") in wanted or n in wanted]
    failed = []
    for name in names:
        print(f"\n## {name.removeprefix('bench_')}", flush=True)
        res = subprocess.run([sys.executable, "-m", f"tests.bench.{name}"], check=False)
        if res.returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that could not run: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
