"""The programs manifest (lab/programs.txt) and the walk that keeps it complete.

Role: ``load_manifest`` reads lab/programs.txt — every external program kubelab executes, with the
Debian package that provides it and its install group (the same file lab/deps.sh installs from, in
bash, before python3 exists). ``scan_tree`` walks the project's code and returns every program it
can see being executed, each with file and line: Python through ``ast`` (subprocess calls, the
project's runner wrappers, argv lists bound to ``argv``/``cmd``/``prefix``/``wrapper`` names), shell
scripts and Makefile recipes through a small command-position tokenizer, and the C launchers'
``exec*`` calls with a literal program. ``unlisted`` keeps the findings the manifest lacks; the unit
test tests/unit/lab/test_programs_manifest.py fails on any, naming file:line and program.

Invariants: the walk only reports names it can read literally (a program held in a variable that is
never bound to a literal is invisible to it: such a call site must resolve its program from a
literal or from this manifest); wrappers are followed (``nsenter … prog``, ``ip netns exec NS prog``,
``env``/``timeout``/``flock``/``chroot``/``setsid`` and ``sh -c 'script'``) so the wrapped program is
reported too. Paths are reported by basename (``/usr/sbin/iptables`` → ``iptables``); programs of
the project itself (``./lab/deps.sh``, ``$(PY)``) are not external and are skipped.

Concurrency: pure functions over text; no shared state.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MANIFEST = Path(__file__).with_name("programs.txt")
GROUPS = ("core", "vagrant", "cleanroom")
FLAGS = ("optional", "onpath", "essential", "guest", "download")

# What the walk covers (relative to the repository root). vagrant/provision/node.sh runs inside the
# guest VMs, whose packages build-box.sh's debootstrap --include and node.sh's own apt list install.
PY_ROOTS = ("controlplane", "noded", "netplugin", "proxy", "lab", "tests")
SHELL_GLOBS = ("lab/*.sh", "vagrant/**/*.sh")
SHELL_EXCLUDE = ("vagrant/provision/node.sh",)
C_GLOBS = ("noded/**/*.c", "netplugin/**/*.c")
MAKEFILES = ("Makefile",)

_PROGRAM = re.compile(r"^[A-Za-z_][\w.+-]*$")


class ManifestError(ValueError):
    pass


@dataclass(frozen=True)
class Entry:
    program: str | None  # None: a package-only line
    package: str
    group: str
    flags: frozenset[str]
    line: int


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    program: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.program}"


def parse_manifest(text: str) -> list[Entry]:
    """The entries of a manifest text; ManifestError names the line of any malformed one."""
    out: list[Entry] = []
    for n, raw in enumerate(text.splitlines(), 1):
        cols = raw.split("#", 1)[0].split()
        if not cols:
            continue
        if len(cols) not in (3, 4):
            raise ManifestError(f"line {n}: want PROGRAM PACKAGE GROUP [FLAGS], got {raw.strip()!r}")
        program, package, group = cols[:3]
        flags = frozenset(cols[3].split(",")) if len(cols) == 4 else frozenset()
        if group not in GROUPS:
            raise ManifestError(f"line {n}: unknown group {group!r} (want one of {', '.join(GROUPS)})")
        if bad := sorted(flags - set(FLAGS)):
            raise ManifestError(f"line {n}: unknown flag {bad[0]!r} (want any of {', '.join(FLAGS)})")
        if program != "-" and not _PROGRAM.match(program):
            raise ManifestError(f"line {n}: {program!r} is not a program name")
        out.append(Entry(None if program == "-" else program, package, group, flags, n))
    return out


def load_manifest(path: Path = MANIFEST) -> list[Entry]:
    return parse_manifest(path.read_text())


def packages(entries: Iterable[Entry], groups: Iterable[str]) -> list[str]:
    """The packages lab/deps.sh installs for ``groups``, each once, in manifest order (its rule, in Python)."""
    wanted, out = set(groups), []
    for e in entries:
        if e.group not in wanted or e.flags & {"essential", "guest"} or e.package in out:
            continue
        if "onpath" in e.flags:  # lab/kubectl.sh's business (a version check, then a pinned release)
            continue
        if "download" in e.flags:  # fetched as a .deb into .cache/debs, never installed
            continue
        out.append(e.package)
    return out


def unlisted(findings: Iterable[Finding], entries: Iterable[Entry]) -> list[Finding]:
    known = {e.program for e in entries if e.program}
    return sorted((f for f in findings if f.program not in known), key=lambda f: (f.path, f.line, f.program))


# --- argv lists: the program and the programs it wraps ----------------------------------------------

# wrapper → options that take a separate value (so the value is not mistaken for the program), and
# how many positional words come before the wrapped program.
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "nsenter": (frozenset({"-t", "--target", "-S", "--setuid", "-G", "--setgid", "-w", "--wd"}), 0),
    "unshare": (frozenset({"--map-user", "--map-group", "--setgroups", "-S", "-G", "-w", "--wd"}), 0),
    "env": (frozenset({"-u", "--unset", "-C", "--chdir"}), 0),
    "timeout": (frozenset({"-s", "--signal", "-k", "--kill-after"}), 1),
    "flock": (frozenset({"-w", "--wait", "--timeout", "-E", "--conflict-exit-code"}), 1),
    "chroot": (frozenset({"--userspec", "--groups"}), 1),
    "setsid": (frozenset(), 0),
    "nice": (frozenset({"-n"}), 0),
}


def program_name(word: str) -> str | None:
    """The program a literal argv[0] names, or None when it is not an external program's name."""
    if word.startswith("/"):
        word = word.rsplit("/", 1)[1]
    elif "/" in word:  # ./lab/deps.sh, .venv/bin/pytest: the project's own
        return None
    return word if _PROGRAM.match(word) else None


def argv_programs(words: Sequence[str | None]) -> list[str]:
    """Programs an argv runs: argv[0] and what wrappers in it run. ``None`` marks a non-literal word."""
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        prog = program_name(w) if w is not None else None
        if prog is None:
            return out
        out.append(prog)
        rest = words[i + 1 :]
        if prog in ("sh", "bash", "dash") and len(rest) >= 2 and rest[0] == "-c" and rest[1] is not None:
            out.extend(shell_programs(rest[1]))
            return out
        if prog == "ip" and len(rest) >= 3 and rest[0] == "netns" and rest[1] == "exec":
            i += 4
            continue
        if prog not in _WRAPPERS:
            return out
        with_value, positional = _WRAPPERS[prog]
        j = i + 1
        while j < len(words):
            w = words[j]
            if w == "--":
                j += 1
                break
            if w is not None and w.startswith("-"):
                j += 2 if w in with_value else 1
                continue
            if w is not None and prog == "env" and "=" in w:
                j += 1
                continue
            if w is None and j > i + 1 and words[j - 1] is None:
                j += 1  # e.g. nsenter's f"--net={path}" then a value: keep skipping non-literals
                continue
            break
        j += positional
        i = j
    return out


# --- Python ---------------------------------------------------------------------------------------

# Callees that take an argv list first (subprocess, asyncio's and the project's runners: noded's and
# proxy's CommandRunner.run, netplugin.masq's and procs' run, lab's _run helpers, Feed).
_ARGV_CALLS = frozenset({"run", "_run", "Popen", "check_output", "check_call", "call", "Feed"})
# Callees that take the program first, then its arguments (os.exec*, asyncio, the tests' sh()).
_VARARG_CALLS = frozenset(
    {
        "create_subprocess_exec",
        "execv",
        "execve",
        "execvp",
        "execvpe",
        "execl",
        "execlp",
        "execle",
        "execlpe",
        "spawnv",
        "spawnvp",
        "spawnlp",
        "posix_spawn",
        "posix_spawnp",
        "sh",
    }
)
# Names an argv list is bound to (assignments, keyword arguments, attributes) before it is run.
_ARGV_NAME = re.compile(r"(^|_)(argv|cmd|prefix|wrapper)$")
# Keyword arguments: not ``argv=``, which also names a container's process (oci.build_config).
_ARGV_KEYWORD = re.compile(r"(^|_)(cmd|prefix|wrapper)$")


def _literal(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _callee(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    if isinstance(node.func, ast.Name):
        return node.func.id
    return None


def _target_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


class _PyWalk(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.found: list[Finding] = []
        self.scopes: list[dict[str, ast.expr]] = [{}]

    def _emit(self, line: int, programs: Iterable[str]) -> None:
        self.found.extend(Finding(self.path, line, p) for p in programs)

    def _words(self, node: ast.expr, depth: int = 0) -> list[str | None] | None:
        """The words of an argv expression when its first word is knowable, else None."""
        if isinstance(node, ast.Name) and depth < 3:
            for scope in reversed(self.scopes):
                if node.id in scope:
                    bound = scope[node.id]
                    return [_literal(bound)] if _literal(bound) else self._words(bound, depth + 1)
            return None
        if not isinstance(node, ast.List | ast.Tuple) or not node.elts:
            return None
        words: list[str | None] = []
        for el in node.elts:
            if isinstance(el, ast.Starred):
                inner = self._words(el.value, depth + 1) if depth < 3 else None
                if inner is None:
                    words.append(None)
                    break  # the rest's positions are unknown
                words.extend(inner)
            elif isinstance(el, ast.Call) and _callee(el) in ("_tool", "tool") and el.args:
                words.append(_literal(el.args[0]))  # self._tool("iptables-save"): the base name
            else:
                words.append(_literal(el))
        return words

    def _argv(self, node: ast.expr, line: int) -> None:
        words = self._words(node)
        if words:
            self._emit(line, argv_programs(words))

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scopes.append({})
        self.generic_visit(node)
        self.scopes.pop()

    visit_FunctionDef = _scoped
    visit_AsyncFunctionDef = _scoped

    def visit_Assign(self, node: ast.Assign) -> None:
        for t in node.targets:
            self._bind(t, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._bind(node.target, node.value)
        self.generic_visit(node)

    def _bind(self, target: ast.expr, value: ast.expr) -> None:
        name = _target_name(target)
        if name is None:
            return
        if isinstance(target, ast.Name) and (isinstance(value, ast.List | ast.Tuple) or _literal(value)):
            self.scopes[-1][name] = value  # argv lists, and program names held in constants
        if isinstance(value, ast.List | ast.Tuple) and _ARGV_NAME.search(name):
            self._argv(value, value.lineno)

    def _name(self, node: ast.expr) -> str | None:
        """A literal string, or a name bound to one (ETCD_BINARY = "etcd")."""
        if isinstance(node, ast.Name):
            for scope in reversed(self.scopes):
                if node.id in scope:
                    return _literal(scope[node.id])
        return _literal(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        # {"argv": ["etcd", …]}: the lab supervisor's components (host processes, not containers)
        for k, v in zip(node.keys, node.values, strict=True):
            if k is not None and (key := _literal(k)) and _ARGV_NAME.search(key) and isinstance(v, ast.List):
                self._argv(v, v.lineno)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        callee = _callee(node)
        if callee in _ARGV_CALLS:
            arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "args"), None)
            if arg is not None:
                self._argv(arg, node.lineno)
        elif callee in _VARARG_CALLS and node.args:
            first = node.args[0]
            if isinstance(first, ast.Starred):
                self._argv(first.value, node.lineno)
            else:
                words = [self._name(a) if not isinstance(a, ast.Starred) else None for a in node.args]
                self._emit(node.lineno, argv_programs(words))
        elif callee == "which" and node.args and (prog := self._name(node.args[0])):
            self._emit(node.lineno, argv_programs([prog]))  # looked up on PATH to be run
        for k in node.keywords:
            if k.arg and _ARGV_KEYWORD.search(k.arg) and isinstance(k.value, ast.List | ast.Tuple):
                self._argv(k.value, k.value.lineno)
        self.generic_visit(node)


def python_programs(source: str, path: str = "<string>") -> list[Finding]:
    walk = _PyWalk(path)
    walk.visit(ast.parse(source, filename=path))
    return _dedup(walk.found)


# --- shell scripts and Makefile recipes -------------------------------------------------------------

_SH_KEYWORDS = frozenset(
    ["if", "then", "else", "elif", "fi", "while", "until", "do", "done", "esac", "!", "{", "}", "time"]
)
_SH_BUILTINS = frozenset(
    [
        ".",
        ":",
        "[",
        "[[",
        "alias",
        "break",
        "cd",
        "continue",
        "declare",
        "echo",
        "eval",
        "exit",
        "export",
        "false",
        "getopts",
        "hash",
        "kill",
        "let",
        "local",
        "mapfile",
        "printf",
        "pwd",
        "read",
        "readonly",
        "return",
        "set",
        "shift",
        "shopt",
        "source",
        "test",
        "trap",
        "true",
        "type",
        "umask",
        "unset",
        "wait",
    ]
)
_ASSIGN = re.compile(r"^[A-Za-z_]\w*(\[[^]]*\])?\+?=")
_ARRAY_USE = re.compile(r"^\$\{([A-Za-z_]\w*)\[@\]\}$")
_FUNC_DEF = re.compile(r"^\s*(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\)", re.M)
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")


@dataclass
class _Word:
    text: str = ""
    expanded: bool = False  # holds a $-expansion or substitution: its value is not literal

    def literal(self) -> str | None:
        return None if self.expanded else self.text


class _ShellScan:
    """A small quote-aware scanner: the simple commands of a script, each with its line.

    Enough of the shell grammar for the project's scripts: quotes, escapes, ``$(…)`` and backticks
    (scanned recursively), ``${…}``/``$((…))`` (values), operators, redirections (dropped with their
    target), array assignments (``X=(prog …)`` then ``"${X[@]}"`` in command position), ``for``/
    ``case`` headers and case patterns (not commands). It never runs anything.
    """

    def __init__(self, text: str, offset_line: int, arrays: dict[str, str] | None = None) -> None:
        self.t = self._blank_heredocs(text)
        self.offset = offset_line
        self.arrays: dict[str, str] = {} if arrays is None else arrays
        self.commands: list[tuple[int, list[_Word]]] = []
        self.i = 0
        self.words: list[_Word] = []
        self.cur: _Word | None = None
        self.cmd_start = 0
        self.pattern = False  # inside a case, reading a pattern up to its ")"

    @staticmethod
    def _blank_heredocs(text: str) -> str:
        lines = text.split("\n")
        end: str | None = None
        for i, line in enumerate(lines):
            if end is not None:
                lines[i] = ""
                if line.strip() == end:
                    end = None
            elif m := _HEREDOC.search(line):
                end = m.group(2)
                lines[i] = line[: m.start()]
        return "\n".join(lines)

    def _line(self, pos: int) -> int:
        return self.offset + self.t.count("\n", 0, pos)

    def _word(self) -> _Word:
        if self.cur is None:
            self.cur = _Word()
        return self.cur

    def _close(self, i: int, open_: str = "(", close: str = ")") -> int:
        """The index just past the bracket matching the one before ``i`` (quotes respected)."""
        depth, t = 1, self.t
        while i < len(t) and depth:
            c = t[i]
            if c == "\\":
                i += 1
            elif c == "'":
                j = t.find("'", i + 1)
                i = len(t) if j < 0 else j
            elif c == open_:
                depth += 1
            elif c == close:
                depth -= 1
            i += 1
        return i

    def _sub(self, start: int, end: int) -> None:
        """A command substitution: its commands are commands too; the word's value is unknown."""
        inner = _ShellScan(self.t[start:end], self._line(start), self.arrays)
        inner.scan()
        self.commands.extend(inner.commands)
        self._word().expanded = True

    def _end_word(self) -> None:
        if self.cur is not None:
            self.words.append(self.cur)
        self.cur = None

    def _end_command(self) -> None:
        self._end_word()
        if self.words:
            self.commands.append((self._line(self.cmd_start), self.words))
            self.pattern = self.words[0].literal() == "case"
        self.words = []

    def _in_pattern(self) -> None:
        t, i = self.t, self.i
        if t[i] == ")":
            self.pattern, self.words, self.cur = False, [], None
        elif t.startswith("esac", i) and (i == 0 or t[i - 1] in " \t\n;"):
            self.pattern = False
            self.i = i + 4
            return
        self.i = i + 1

    def _dollar(self) -> None:
        """``$…`` at self.i: a substitution (scanned), an expansion (a value), or a variable."""
        t, i = self.t, self.i
        if t.startswith("$((", i) or t.startswith("${", i):
            j = self._close(i + 3) if t[i + 1] == "(" else self._close(i + 2, "{", "}")
            w = self._word()
            w.expanded, w.text = True, w.text + t[i:j]
        elif t.startswith("$(", i):
            j = self._close(i + 2)
            self._sub(i + 2, j - 1)
        else:
            w = self._word()
            w.expanded, w.text, j = True, w.text + "$", i + 1
        self.i = j

    def _backtick(self) -> None:
        j = self.t.find("`", self.i + 1)
        j = len(self.t) if j < 0 else j
        self._sub(self.i + 1, j)
        self.i = j + 1

    def _double_quoted(self) -> None:
        t = self.t
        w = self._word()
        self.i += 1
        while self.i < len(t) and t[self.i] != '"':
            c = t[self.i]
            if c == "\\":
                w.text += t[self.i + 1 : self.i + 2]
                self.i += 2
            elif c == "$":
                self._dollar()
            elif c == "`":
                self._backtick()
            else:
                w.text += c
                self.i += 1
        self.i += 1

    def _redirect(self) -> None:
        """``>``/``<`` and friends: the operator and its target word are dropped."""
        t = self.t
        if self.cur is not None and self.cur.text.isdigit():
            self.cur = None  # the fd of 2>…
        self._end_word()
        while self.i < len(t) and t[self.i] in "<>&|":
            self.i += 1
        if t[self.i - 1] in "<>" and t.startswith("(", self.i):  # <(cmd): a process substitution
            j = self._close(self.i + 1)
            self._sub(self.i + 1, j - 1)
            self._end_word()
            self.i = j
            return
        if t[self.i - 1] == "&" and self.i < len(t) and (t[self.i].isdigit() or t[self.i] == "-"):
            self.i += 1  # >&2
            return
        while self.i < len(t) and t[self.i] in " \t":
            self.i += 1
        while self.i < len(t) and t[self.i] not in " \t\n;|&)<>":
            if t[self.i] == '"':
                j = t.find('"', self.i + 1)
                self.i = len(t) if j < 0 else j
            self.i += 1

    def _array(self) -> None:
        """``NAME=(word …)``: remember the first word, for ``"${NAME[@]}"`` in command position."""
        assert self.cur is not None
        j = self._close(self.i + 1)
        body = self.t[self.i + 1 : j - 1].split()
        if body:
            self.arrays[self.cur.text.rstrip("+=")] = body[0]
        self.cur.expanded, self.i = True, j

    def scan(self) -> None:
        t = self.t
        while self.i < len(t):
            c = t[self.i]
            if self.cur is None and not self.words:
                self.cmd_start = self.i
            if self.pattern:
                self._in_pattern()
            elif c == "\\":
                if t[self.i + 1 : self.i + 2] not in ("\n", ""):
                    self._word().text += t[self.i + 1]
                self.i += 2
            elif c == "#" and self.cur is None:
                j = t.find("\n", self.i)
                self.i = len(t) if j < 0 else j
            elif c in " \t":
                self._end_word()
                self.i += 1
            elif c == "'":
                j = t.find("'", self.i + 1)
                j = len(t) if j < 0 else j
                self._word().text += t[self.i + 1 : j]
                self.i = j + 1
            elif c == '"':
                self._double_quoted()
            elif c == "$":
                self._dollar()
            elif c == "`":
                self._backtick()
            elif c == "(" and self.cur is not None and self.cur.text.endswith("=") and not self.cur.expanded:
                self._array()
            elif c in "<>":
                self._redirect()
            elif c in ";|&()\n":
                two = t[self.i : self.i + 2]
                self._end_command()
                self.i += 2 if two in (";;", "&&", "||") else 1
                self.pattern = self.pattern or two == ";;"
            else:
                self._word().text += c
                self.i += 1
        self._end_command()


def shell_programs(source: str, path: str = "<string>", first_line: int = 1) -> list[str]:
    return [f.program for f in shell_findings(source, path, first_line)]


def shell_findings(source: str, path: str = "<string>", first_line: int = 1) -> list[Finding]:
    functions = set(_FUNC_DEF.findall(source))
    scan = _ShellScan(source, first_line)
    scan.scan()
    found: list[Finding] = []
    for line, words in scan.commands:
        while words and (words[0].literal() in _SH_KEYWORDS or _ASSIGN.match(words[0].text)):
            words = words[1:]
        if words and words[0].literal() in ("exec", "command", "builtin"):
            if words[0].literal() == "command" and len(words) > 1 and words[1].text.startswith("-"):
                continue  # command -v NAME: a lookup, not a run
            words = words[1:]
        if not words:
            continue
        first = words[0]
        if first.literal() in ("for", "select", "case", "function") or (first.text in functions):
            continue
        if m := _ARRAY_USE.match(first.text):
            prog = program_name(scan.arrays.get(m.group(1), "-"))
            if prog:
                found.append(Finding(path, line, prog))
            continue
        if first.literal() is None or first.text in _SH_BUILTINS:
            continue
        found.extend(Finding(path, line, p) for p in argv_programs([w.literal() for w in words]))
    return _dedup(found)


def makefile_findings(source: str, path: str = "Makefile") -> list[Finding]:
    """Programs of Makefile recipe lines (tab-indented), with make's @/-/+ prefixes dropped."""
    found: list[Finding] = []
    for n, line in enumerate(source.splitlines(), 1):
        if not line.startswith("\t"):
            continue
        recipe = line.lstrip("\t").lstrip("@-+")
        recipe = re.sub(r"\$\([A-Za-z_]+\)", "$V", recipe)  # make variables: $(PY) and friends
        found.extend(shell_findings(recipe, path, n))
    return _dedup(found)


# --- C launchers ------------------------------------------------------------------------------------

_C_EXEC = re.compile(r"\bexec(?:v|vp|ve|vpe|l|lp|le)\s*\(\s*\"([^\"]+)\"")
_C_ARGV = re.compile(r"\bchar\s*\*\s*\w+\s*\[\s*\]\s*=\s*\{\s*\"([^\"]+)\"")


def c_findings(source: str, path: str = "<string>") -> list[Finding]:
    """exec*() with a literal program, and literal argv arrays (char *argv[] = {"prog", …})."""
    found: list[Finding] = []
    for n, line in enumerate(source.splitlines(), 1):
        for m in (*_C_EXEC.finditer(line), *_C_ARGV.finditer(line)):
            prog = program_name(m.group(1))
            if prog:
                found.append(Finding(path, n, prog))
    return found


# --- the tree -------------------------------------------------------------------------------------


def _dedup(found: Iterable[Finding]) -> list[Finding]:
    return list(dict.fromkeys(found))


def scan_tree(root: Path = REPO) -> list[Finding]:
    """Every program the project's code can be seen executing, with file and line."""
    found: list[Finding] = []
    for top in PY_ROOTS:
        for f in sorted((root / top).rglob("*.py")):
            rel = f.relative_to(root).as_posix()
            found.extend(python_programs(f.read_text(), rel))
    for pattern in SHELL_GLOBS:
        for f in sorted(root.glob(pattern)):
            rel = f.relative_to(root).as_posix()
            if rel not in SHELL_EXCLUDE:
                found.extend(shell_findings(f.read_text(), rel))
    for pattern in C_GLOBS:
        for f in sorted(root.glob(pattern)):
            found.extend(c_findings(f.read_text(), f.relative_to(root).as_posix()))
    for name in MAKEFILES:
        if (root / name).exists():
            found.extend(makefile_findings((root / name).read_text(), name))
    return found
