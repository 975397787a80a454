"""Every program hack/ and the Makefile run is installed by the project, or a prerequisite.

A fresh machine once failed `make test` because a script ran `debootstrap`, which only a
developer's machine happened to have. This test reads the scripts (bash, Python, the Makefile)
for the programs they invoke and fails on any that is neither provided by a package in
hack/packages.txt, nor a README prerequisite, nor built by the project. The extraction is
deliberately simple (first words of shell commands, literal argv[0] in Python); a program it
cannot see (behind a variable) is a path the project built or one named elsewhere.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "hack"))

from stackctl import deps  # noqa: E402

# README: "Python 3.11 and Go 1.26+; root or sudo for Debian packages", plus the Debian
# tools that exist wherever apt-get does.
PREREQUISITES = {"python3", "python3.11", "go", "sudo", "apt-get", "dpkg-query", "dpkg"}
# Built or installed by the project itself (Go module proxy, PyPI, uv, Maven Central).
BUILT = {"kubectl", "helm", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
         "etcd", "etcdctl", "bao", "uv", "pytest", "ruff", "mypy", "cdc-operator",
         "cdc-worker"}  # fmt: skip
# The kind path is for machines with Docker (README, "With Docker: kind").
KIND_PATH = {"docker", "kind"}
SHELL_WORDS = {
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "in", "function", "return", "exit", "[[", "]]", "[", "test", "echo", "printf", "read", "cd",
    "set", "shift", "trap", "local", "export", "source", ".", "true", "false", ":", "eval",
    "wait", "declare", "unset", "break", "continue", "pushd", "popd", "mapfile", "getopts",
    "type", "hash", "command", "builtin", "let", "ulimit", "umask", "kill", "exec", "readonly",
    "time", "!", "{", "}", "(", ")", "((", "))", "select", "caller", "disown", "jobs", "shopt",
}  # fmt: skip
WRAPPERS = {"sudo", "env", "nice", "timeout", "xargs", "exec", "command", "time", "nohup"}


def shell_functions() -> set[str]:
    """Functions defined in any script of hack/ (scripts source each other's helpers)."""
    names: set[str] = set()
    for path in (REPO / "hack").rglob("*.sh"):
        names |= set(re.findall(r"^\s*([A-Za-z_][\w-]*)\s*\(\)\s*\{", path.read_text(), re.M))
    return names


def _strip(text: str) -> str:
    """The script without heredoc bodies, comments, quoted text and arithmetic."""
    kept, heredoc = [], None
    for raw in text.splitlines():
        if heredoc is not None:
            if raw.strip() == heredoc:
                heredoc = None
            continue
        m = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", raw)
        if m:
            heredoc = m.group(1)
        kept.append(re.sub(r"(^|\s)#.*$", "", raw))
    text = "\n".join(kept).replace("\\\n", " ")
    text = re.sub(r"'[^']*'", "''", text)
    # A double-quoted string keeps only the commands it substitutes: "$(a | b)" -> ;a | b;
    text = re.sub(r'"(?:[^"\\]|\\.)*"', _substitutions, text, flags=re.S)
    return re.sub(r"\$\(\((?:[^()]|\([^()]*\))*\)\)", "0", text)


def _substitutions(m: re.Match[str]) -> str:
    inner = re.findall(r"\$\(((?:[^()]|\([^()]*\))*)\)", m.group(0))
    return "".join(f" ;{cmd}; " for cmd in inner if not cmd.startswith("(")) or '""'


def shell_programs(text: str, functions: frozenset[str] = frozenset()) -> set[str]:
    """First words of the commands in a bash script."""
    out: set[str] = set()
    functions = functions | set(re.findall(r"^\s*([A-Za-z_][\w-]*)\s*\(\)\s*\{", text, re.M))
    lines = _strip(text).splitlines()
    for line in lines[1:] if lines and lines[0].startswith("#!") else lines:
        for seg in re.split(r"\|\||&&|[|;&`]|\$\(|\(|\{|\bthen\b|\bdo\b|\belse\b|!", line):
            words = seg.split()
            while words and (re.match(r"^[A-Za-z_]\w*(\[.*\])?\+?=", words[0])
                             or words[0] in WRAPPERS or words[0].startswith("-")):  # fmt: skip
                words.pop(0)
            if not words:
                continue
            w = words[0]
            if (w in SHELL_WORDS or w in functions or "/" in w or "$" in w or w.endswith(")")
                    or not re.match(r"^[A-Za-z][\w.+-]*$", w)):  # fmt: skip
                continue
            out.add(w)
    return out


CALLS = {"run", "Popen", "check_output", "check_call", "call", "_run", "exec_run"}


def python_programs(text: str) -> set[str]:
    """Literal argv[0]s of subprocess-style calls, and names looked up with shutil.which."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else (
            node.func.id if isinstance(node.func, ast.Name) else "")  # fmt: skip
        first = node.args[0]
        if name in CALLS and isinstance(first, ast.List | ast.Tuple) and first.elts:
            head = first.elts[0]
            if isinstance(head, ast.Constant) and isinstance(head.value, str):
                out.add(head.value)
        elif name == "which" and isinstance(first, ast.Constant) and isinstance(first.value, str):
            out.add(first.value)
    return {p for p in out if "/" not in p}


def makefile_programs(text: str) -> set[str]:
    text = text.replace("\\\n", " ")
    vars_ = dict(re.findall(r"^([A-Z_]+)\s*[:?]?=\s*(.*)$", text, re.M))
    out: set[str] = set()
    for line in text.splitlines():
        if not line.startswith("\t"):
            continue
        for seg in re.split(r"&&|\|\||[;|]", line.strip().lstrip("@-")):
            words = seg.split()
            while words and words[0] in WRAPPERS:
                words.pop(0)
            if not words:
                continue
            w = words[0]
            m = re.fullmatch(r"\$\(([A-Z_]+)\)", w)
            if m:
                w = vars_.get(m.group(1), "/").split()[0] if vars_.get(m.group(1)) else "/"
            if "/" in w or "$" in w or w in SHELL_WORDS:
                continue
            out.add(w)
    return out


def used_programs() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "hack").rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".py" or text.startswith("#!/usr/bin/env python"):
            progs = python_programs(text)
        elif path.suffix == ".sh" or text.startswith("#!/usr/bin/env bash"):
            progs = shell_programs(text, frozenset(shell_functions()))
        else:
            continue
        for p in progs:
            found.setdefault(p, set()).add(str(path.relative_to(REPO)))
    for p in makefile_programs((REPO / "Makefile").read_text()):
        found.setdefault(p, set()).add("Makefile")
    return found


def allowed() -> set[str]:
    provided = {prog for pkg in deps.manifest() for prog in pkg.programs()}
    return provided | PREREQUISITES | BUILT | KIND_PATH


def test_every_program_the_project_runs_is_installed_by_it_or_a_prerequisite() -> None:
    unknown = {p: sorted(w) for p, w in used_programs().items() if p not in allowed()}
    assert unknown == {}, (
        f"programs run by hack/ or the Makefile that no package in hack/packages.txt provides "
        f"(add the Debian package there, or build it): {unknown}"
    )


def test_the_guard_sees_a_program_in_each_language() -> None:
    script = 'set -e\nX=1 debootstrap --variant=minbase "$S" "$R"\nfoo() { buildah from x; }\n'
    assert {"debootstrap", "buildah"} <= shell_programs(script)
    assert "foo" not in shell_programs(script + "foo\n")
    assert shell_programs("cat <<EOF\nrm -rf /\nEOF\n") == {"cat"}
    assert python_programs('run(["skopeo", "copy"])\nshutil.which("umoci")\n') == {
        "skopeo", "umoci"
    }  # fmt: skip
    assert makefile_programs("PY := python9\nx:\n\t$(PY) -m y && jq . f\n") == {"python9", "jq"}
    assert "skopeo" not in allowed()


def test_the_manifest_is_well_formed() -> None:
    pkgs = deps.manifest()
    assert len({p.name for p in pkgs}) == len(pkgs)
    for p in pkgs:
        assert p.provides, p
        assert all(x == "deb" or x.startswith(("cmd:", "path:/")) for x in p.provides), p
        assert p.needed_by, p
    names = {p.name for p in pkgs}
    assert {"buildah", "debootstrap", "postgresql", "redis-server"} <= names


def test_no_other_place_installs_debian_packages() -> None:
    installers = []
    for path in [*(REPO / "hack").rglob("*"), REPO / "Makefile", *(REPO / "tests").rglob("*.py")]:
        if path.is_file() and path.suffix not in {".pyc"} and path.name != "deps.py":
            text = path.read_text(errors="replace")
            if re.search(r"apt-get\W+install|\"apt-get\", \"install\"", text) and (
                path != Path(__file__)
            ):
                installers.append(str(path.relative_to(REPO)))
    assert installers == []
