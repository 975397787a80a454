"""The project's Debian packages and prerequisites: one manifest, one install step, one doctor.

`hack/packages.txt` names every Debian package the project needs. `install()` is the only code
that installs packages (as root: apt-get; otherwise it stops with the command to run), and
`hack/stack up`, `make deps` (so `make test`, `make demo`, `make image`) and
`hack/image/*.sh` all go through it. A package counts as present when what it provides is
there (a program on PATH, a file, or the package itself when it provides neither), so a JDK
or Maven installed outside Debian satisfies the prerequisite as well.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .core import REPO, StackError, is_root, log, run

MANIFEST = REPO / "hack" / "packages.txt"
# What the README asks for before `make`: checked and reported, never installed by us.
PREREQUISITES = {
    "python3.11": ("python3.11 with venv and ensurepip", ["python3.11", "--version"]),
    "go": ("Go 1.26+", ["go", "version"]),
}


@dataclass(frozen=True)
class Package:
    name: str
    provides: tuple[str, ...]  # "cmd:X", "path:/X" or "deb"
    needed_by: str

    def present(self) -> bool:
        return all(_provided(p, self.name) for p in self.provides)

    def programs(self) -> list[str]:
        return [p[4:] for p in self.provides if p.startswith("cmd:")]


def manifest(path: Path = MANIFEST) -> list[Package]:
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, provides, *rest = line.split(maxsplit=2)
        out.append(Package(name, tuple(provides.split(",")), rest[0] if rest else ""))
    return out


def _dpkg_version(pkg: str) -> str | None:
    res = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}\t${Version}", pkg],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    status, _, version = res.stdout.partition("\t")
    return version if res.returncode == 0 and status.endswith(" installed") else None


def _provided(what: str, pkg: str) -> bool:
    if what.startswith("cmd:"):
        return shutil.which(what[4:]) is not None
    if what.startswith("path:"):
        return Path(what[5:]).exists()
    return _dpkg_version(pkg) is not None


def missing(pkgs: list[Package] | None = None) -> list[Package]:
    return [p for p in (pkgs if pkgs is not None else manifest()) if not p.present()]


def install() -> None:
    """Install every missing package of the manifest (idempotent, quick when none is)."""
    todo = missing()
    if not todo:
        return
    names = [p.name for p in todo]
    if not is_root():
        raise StackError(
            f"missing Debian packages {names}: run `sudo hack/stack deps` "
            f"(or `sudo apt-get install {' '.join(names)}`)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log("apt-get update")
    run(["apt-get", "update", "-qq"], env=env)
    log(f"apt-get install {' '.join(names)}")
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *names], env=env)
    still = [p.name for p in missing(todo)]
    if still:
        raise StackError(f"apt-get installed {names}, but {still} still provide nothing")


def _version_line(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    text = (res.stdout + res.stderr).strip()
    return text.splitlines()[0] if text else "(no version printed)"


def _go_ok(line: str) -> bool:
    m = re.search(r"go(\d+)\.(\d+)", line)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (1, 26)


def doctor() -> tuple[list[str], bool]:
    """A line per prerequisite and package (version, or what is missing and its fix)."""
    lines, ok = [], True
    lines.append("prerequisites (README):")
    for name, (what, cmd) in PREREQUISITES.items():
        line = _version_line(cmd)
        good = line is not None and (name != "go" or _go_ok(line))
        if name == "python3.11" and good:
            res = subprocess.run(["python3.11", "-c", "import venv, ensurepip"],
                                 capture_output=True, check=False)  # fmt: skip
            if res.returncode != 0:
                good, line = False, f"{line}, but no venv/ensurepip"
        fix = "install it (see README)" + (
            "; Debian: apt-get install python3.11-venv" if name == "python3.11" else ""
        )
        lines.append(f"  {'ok ' if good else 'MISSING'} {what:<36} {line or 'not found'}"
                     + ("" if good else f"  -> {fix}"))  # fmt: skip
        ok &= good
    lines.append(f"Debian packages ({MANIFEST.relative_to(REPO)}):")
    absent = []
    for p in manifest():
        if p.present():
            ver = _dpkg_version(p.name) or "present (not from Debian)"
            lines.append(f"  ok      {p.name:<24} {ver:<28} {p.needed_by}")
        else:
            absent.append(p.name)
            lines.append(f"  MISSING {p.name:<24} {'-':<28} {p.needed_by}")
    if absent:
        ok = False
        how = "hack/stack deps" if is_root() else "sudo hack/stack deps"
        lines.append(f"fix: `{how}` (installs {' '.join(absent)})")
    return lines, ok
