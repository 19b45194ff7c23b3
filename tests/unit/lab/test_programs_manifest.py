"""The programs manifest (lab/programs.txt) lists every program the code executes (issue 18 §1).

The walk (lab/programs.py) reads the Python sources with ``ast``, the shell scripts and Makefile
recipes with a small tokenizer and the C launchers with a pattern; the first test fails, naming
file:line and program, when the code runs a program the manifest lacks. The checker's own tests
feed it synthetic sources (a new ``subprocess.run(["some-new-tool", …])`` must be reported). The
package test asks dpkg whether each entry's package really ships its program (where dpkg knows the
package). No root needed; nothing is installed or changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from lab import programs
from lab.programs import Finding

REPO = programs.REPO
ENTRIES = programs.load_manifest()


def names(found: list[Finding]) -> list[str]:
    return [f.program for f in found]


# --- the project ----------------------------------------------------------------------------------


def test_every_program_the_code_executes_is_in_the_manifest() -> None:
    missing = programs.unlisted(programs.scan_tree(), ENTRIES)
    assert not missing, "programs executed but not in lab/programs.txt (add PROGRAM PACKAGE GROUP):\n" + "\n".join(
        f"  {f}" for f in missing
    )


def test_the_walk_sees_the_known_call_sites() -> None:
    """Not vacuous: the walk finds programs in each kind of source, including the bug of issue 18."""
    found = {(f.path, f.program) for f in programs.scan_tree()}
    for where in [
        ("proxy/backend/restore.py", "nft"),  # the proxy's `nft list chains ip`
        ("proxy/backend/restore.py", "iptables-save"),  # self._tool("iptables-save")
        ("noded/network/netns.py", "ip"),  # CommandRunner.run([...])
        ("lab/labcmd.py", "etcd"),  # {"argv": ["etcd", ...]}: a supervised component
        ("netplugin/agent.py", "nsenter"),
        ("tests/helpers/etcd.py", "etcd"),  # shutil.which(ETCD_BINARY)
        ("tests/e2e/test_lab.py", "iptables"),  # sh("ip", "netns", "exec", node, "iptables", ...)
        ("vagrant/lab.sh", "virsh"),  # VIRSH=(virsh -c ...) then "${VIRSH[@]}"
        ("vagrant/provision/build-box.sh", "debootstrap"),
        ("lab/deps.sh", "apt-get"),
    ]:
        assert where in found, f"the walk no longer sees {where[1]} in {where[0]}"


def test_the_manifest_is_well_formed() -> None:
    seen: set[tuple[str, str]] = set()
    for e in ENTRIES:
        if e.program is not None:
            assert (e.program, e.group) not in seen, f"lab/programs.txt:{e.line}: {e.program} listed twice in {e.group}"
            seen.add((e.program, e.group))
    listed = {e.program for e in ENTRIES}
    # The bug, and the clean-room test's host tools (the clean-room branch relies on them).
    assert {"nft", "runc", "etcd", "kubectl", "make", "git", "python3"} <= listed
    cleanroom = {e.program for e in ENTRIES if e.group == "cleanroom"}
    assert {"debootstrap", "tinyproxy", "unshare", "pivot_root", "nsenter"} <= cleanroom
    pkg = {e.program: e.package for e in ENTRIES if e.program}
    assert pkg["nft"] == "nftables" and pkg["tinyproxy"] == "tinyproxy-bin"


@pytest.mark.parametrize(
    "env",
    [{}, {"KUBELAB_VAGRANT": "1"}, {"KUBELAB_CLEANROOM": "1"}, {"KUBELAB_VAGRANT": "1", "KUBELAB_CLEANROOM": "1"}],
    ids=["core", "vagrant", "cleanroom", "all"],
)
def test_deps_sh_reads_the_manifest_as_python_does(env: dict[str, str]) -> None:
    """lab/deps.sh (bash, before python3 exists) and lab/programs.py agree on what to install."""
    res = subprocess.run(
        ["bash", str(REPO / "lab" / "deps.sh"), "--list"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    groups = (
        ["core"]
        + (["vagrant"] if "KUBELAB_VAGRANT" in env else [])
        + (["cleanroom"] if "KUBELAB_CLEANROOM" in env else [])
    )
    want = programs.packages(ENTRIES, groups)
    assert res.stdout.split() == want
    assert "nftables" in want and ("tinyproxy-bin" in want) == ("KUBELAB_CLEANROOM" in env)


def test_deps_sh_keeps_no_package_list_of_its_own() -> None:
    text = (REPO / "lab" / "deps.sh").read_text()
    assert "programs.txt" in text
    for pkg in ("runc", "iptables", "etcd-server", "skopeo", "nftables", "tinyproxy"):
        assert pkg not in text, f"lab/deps.sh names {pkg}: packages belong in lab/programs.txt"


# --- the checker ----------------------------------------------------------------------------------


def test_a_new_tool_run_through_subprocess_is_reported_with_its_line() -> None:
    src = textwrap.dedent(
        """\
        import subprocess

        def f():
            subprocess.run(["some-new-tool", "x"], check=True)
        """
    )
    found = programs.python_programs(src, "pkg/mod.py")
    assert found == [Finding("pkg/mod.py", 4, "some-new-tool")]
    missing = programs.unlisted(found, ENTRIES)
    assert [str(f) for f in missing] == ["pkg/mod.py:4: some-new-tool"]
    assert programs.unlisted(programs.python_programs('subprocess.run(["nft", "-j"])'), ENTRIES) == []


def test_python_calls_wrappers_and_bound_argv_lists_are_followed() -> None:
    src = textwrap.dedent(
        """\
        import asyncio, os, shutil, subprocess
        TOOL = "tool-const"

        def a(runner, ns):
            argv = ["tool-a", "-x"]
            if ns:
                argv = ["nsenter", f"--net={ns}", "--", *argv]
            subprocess.Popen(argv)
            runner.run(["ip", "netns", "exec", ns, "tool-b", "y"])
            subprocess.check_output(args=["sh", "-c", "tool-c | tool-d -q"])
            os.execvp("tool-e", ["tool-e"])
            asyncio.create_subprocess_exec(TOOL, "z")
            shutil.which("tool-f")
            comps = [{"name": "x", "argv": ["/usr/sbin/tool-g", "--flag"]}]
            self_runner = runner.run([self._tool("tool-h"), "-w"])
            helper(cni_exec_prefix=["tool-i", "--net=x"])
        """
    )
    got = set(names(programs.python_programs(src)))
    want = {"tool-a", "nsenter", "ip", "tool-b", "sh", "tool-c", "tool-d", "tool-e", "tool-const", "tool-f"}
    assert want | {"tool-g", "tool-h", "tool-i"} <= got


def test_python_things_that_run_nothing_on_the_host_are_not_reported() -> None:
    src = textwrap.dedent(
        """\
        import asyncio, subprocess, sys
        pod = {"spec": {"containers": [{"command": ["sleep", "3600"], "args": ["x"]}]}}
        cfg = oci.build_config(kind="sandbox", argv=["/pause"])
        asyncio.run(main())
        subprocess.run([sys.executable, "-m", "lab"])
        subprocess.run(["./lab/deps.sh"])
        subprocess.run(make_argv())
        headers = ["Content-Type", "x"]
        """
    )
    assert programs.python_programs(src) == []


def test_shell_commands_are_found_and_the_rest_is_not() -> None:
    script = textwrap.dedent(
        """\
        #!/usr/bin/env bash
        set -euo pipefail  # set is a builtin
        VIRSH=(virsh -c qemu:///system)
        say() { echo "x: $*"; }
        die() { echo "error: $*" >&2; exit 1; }
        if ! command -v absent-tool >/dev/null 2>&1; then say "a; b && c"; fi
        out=$(tool-sub --x 2>/dev/null | tool-pipe) || die "tool-not: in a message"
        "${VIRSH[@]}" net-list
        for d in notrun1 notrun2; do "$d" -d; done
        case "${1:-}" in
          up) tool-case ;;
          *) die "usage" ;;
        esac
        cat > /tmp/f <<EOF
        heredoc-line is not run
        EOF
        x=${1:?usage: notrun3 ARG}
        n=$((n - 1))
        flock /tmp/l tool-locked --arg \\
          --more
        [ -c /dev/kvm ] && grep -q vmx /proc/cpuinfo  # comment-word
        exec /usr/bin/tool-exec "$@"
        while read -r a; do :; done < <(tool-procsub x)
        """
    )
    got = programs.shell_findings(script, "s.sh")
    assert sorted(set(names(got))) == sorted(
        {
            "virsh",
            "tool-sub",
            "tool-pipe",
            "tool-case",
            "cat",
            "flock",
            "tool-locked",
            "grep",
            "tool-exec",
            "tool-procsub",
        }
    )
    assert Finding("s.sh", 7, "tool-sub") in got and Finding("s.sh", 22, "tool-exec") in got


def test_makefile_recipes_and_c_launchers() -> None:
    mk = "demo: deps\n\t$(PY) -m lab up\n\t@./lab/deps.sh\n\t-tool-mk --x\nVAR := tool-notrun\n"
    assert names(programs.makefile_findings(mk)) == ["tool-mk"]
    c = (
        'int main(void) {\n  char *argv[] = {"tool-arr", "-x", NULL};\n'
        '  execvp("tool-c1", argv);\n  execv(path, argv);\n}\n'
    )
    assert programs.c_findings(c, "x.c") == [Finding("x.c", 2, "tool-arr"), Finding("x.c", 3, "tool-c1")]


def test_argv_wrappers() -> None:
    f = programs.argv_programs
    assert f(["nsenter", "-t", "1", "-n", "tool-a", "x"]) == ["nsenter", "tool-a"]
    assert f(["nsenter", None, "--", None]) == ["nsenter"]
    assert f(["timeout", "5", "tool-b"]) == ["timeout", "tool-b"]
    assert f(["env", "A=1", "tool-c"]) == ["env", "tool-c"]
    assert f(["ip", "-n", "x", "link"]) == ["ip"]
    assert f(["/usr/sbin/iptables-nft", "-S"]) == ["iptables-nft"]
    assert f([None, "tool-d"]) == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("nft nftables\n", "line 1: want PROGRAM PACKAGE GROUP"),
        ("# c\nnft nftables extra\n", "line 2: unknown group 'extra'"),
        ("nft nftables core sometimes\n", "line 1: unknown flag 'sometimes'"),
        ("nft nftables core optional more\n", "line 1: want PROGRAM PACKAGE GROUP"),
        ("./x nftables core\n", "line 1: './x' is not a program name"),
    ],
)
def test_a_malformed_manifest_line_is_named(text: str, error: str) -> None:
    with pytest.raises(programs.ManifestError, match=error.replace("(", r"\(")):
        programs.parse_manifest(text)


def test_manifest_parsing_reads_comments_flags_and_package_only_lines() -> None:
    got = programs.parse_manifest("# head\n\nnft nftables core # why\n- libc6-dev core\nx y vagrant optional,onpath\n")
    assert [(e.program, e.package, e.group, sorted(e.flags), e.line) for e in got] == [
        ("nft", "nftables", "core", [], 3),
        (None, "libc6-dev", "core", [], 4),
        ("x", "y", "vagrant", ["onpath", "optional"], 5),
    ]


# --- the packages really provide the programs ------------------------------------------------------

_BIN_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")  # where packages put programs (not PATH: pyenv shims)


def _installed(package: str) -> bool:
    res = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False)
    return res.returncode == 0 and "install ok installed" in res.stdout


def _depends(package: str) -> set[str]:
    res = subprocess.run(
        ["dpkg-query", "-W", "-f=${Pre-Depends},${Depends}", package], capture_output=True, text=True, check=True
    )
    return {alt.split()[0] for dep in res.stdout.split(",") for alt in dep.split("|") if alt.strip()}


def _owners(path: str) -> set[str]:
    """Packages dpkg says own ``path`` (tried with and without /usr: merged-/usr systems)."""
    variants = {path, path.removeprefix("/usr")} if path.startswith("/usr/") else {path, "/usr" + path}
    out: set[str] = set()
    for p in variants:
        res = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True, check=False)
        if res.returncode == 0:
            out |= {
                o.strip().split(":")[0] for line in res.stdout.splitlines() for o in line.split(":", 1)[0].split(",")
            }
    return out


def _provides(package: str, program: str) -> bool:
    files = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout.split()
    if any(os.path.dirname(f) in _BIN_DIRS and os.path.basename(f) == program for f in files):
        return True
    # Shipped by a package it depends on (python3 → python3-minimal), or an alternative the package
    # registers (cc → gcc-12's gcc, iptables → iptables-nft): the file on PATH, or the one it
    # resolves to, belongs to the package or to one of its direct dependencies.
    path = shutil.which(program, path=os.pathsep.join(_BIN_DIRS))
    if path is None:
        return False
    return bool((_owners(path) | _owners(os.path.realpath(path))) & ({package} | _depends(package)))


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="no dpkg: not a Debian machine")
@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.program], ids=lambda e: f"{e.program}@{e.group}")
def test_the_package_provides_the_program(entry: programs.Entry) -> None:
    assert entry.program is not None
    if not _installed(entry.package):
        pytest.skip(f"{entry.package} is not installed here: dpkg cannot list its files")
    assert _provides(entry.package, entry.program), (
        f"lab/programs.txt:{entry.line}: package {entry.package} does not ship {entry.program}"
        f" (dpkg -L {entry.package})"
    )


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="no dpkg: not a Debian machine")
def test_the_package_only_lines_name_real_packages() -> None:
    for e in ENTRIES:
        if e.program is None and not _installed(e.package):
            res = subprocess.run(["apt-cache", "show", e.package], capture_output=True, check=False)
            assert res.returncode == 0, f"lab/programs.txt:{e.line}: no package {e.package} known to apt"


def test_the_manifest_path_is_the_one_deps_sh_reads() -> None:
    assert Path(programs.MANIFEST) == REPO / "lab" / "programs.txt"
    assert "MANIFEST=lab/programs.txt" in (REPO / "lab" / "deps.sh").read_text()


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="no dpkg: not a Debian machine")
def test_essential_entries_are_on_every_debian() -> None:
    """``essential`` lines are skipped by deps.sh: their packages must be Essential or priority required."""
    for e in ENTRIES:
        if "essential" not in e.flags:
            continue
        res = subprocess.run(
            ["dpkg-query", "-W", "-f=${Essential} ${Priority}", e.package], capture_output=True, text=True, check=False
        )
        if res.returncode != 0:
            continue  # not installed here: nothing to ask dpkg
        assert res.stdout.split()[0] == "yes" or res.stdout.split()[-1] == "required", (
            f"lab/programs.txt:{e.line}: {e.package} is flagged essential but is {res.stdout!r}"
        )
