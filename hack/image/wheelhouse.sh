#!/usr/bin/env bash
# Prepares build/wheelhouse: the locked runtime dependencies as wheels for the image's Python
# (CPython 3.11 on this machine's architecture, manylinux), plus hatchling (the project's build
# backend), so that the image build installs with `pip install --no-index` and needs no registry.
#
#   UV=<uv> PIP_PYTHON=<python3.11 with pip> hack/image/wheelhouse.sh   (make wheelhouse does this)
#
# build/wheelhouse/requirements.txt is `uv export --frozen --no-dev --no-emit-project` (with
# hashes); uv.lock.sha256 records which lock it came from, and the Dockerfile ignores a wheelhouse
# made from another lock. Up to date (same lock, same script) means nothing is downloaded.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"
: "${UV:?set UV to the uv binary}" "${PIP_PYTHON:?set PIP_PYTHON to a Python 3.11 with pip}"
OUT="$REPO/build/wheelhouse"
cd "$REPO"
image_lock

"$PIP_PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11) and sys.implementation.name == "cpython"' \
  || die "$PIP_PYTHON is not CPython 3.11: the wheels must match the image's Python"

stamp="$(cat uv.lock "$0" | sha256sum | cut -d' ' -f1)"
if [[ -f "$OUT/.stamp" && "$(cat "$OUT/.stamp")" == "$stamp" ]]; then
  exit 0
fi
start=$SECONDS
rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp"
"$UV" export --frozen --no-dev --no-emit-project --quiet -o "$OUT.tmp/requirements.txt"
# Binary wheels only: everything in the lock ships manylinux/pure wheels, and a wheel built here
# would not match the lock's hashes.
# pip evaluates the lock's markers for the interpreter running it, but some depend on the patch
# level (async-timeout for python_full_version < '3.11.3': Debian's python3 is 3.11.2,
# python:3.11-slim a later 3.11). Download for every entry true on either end of 3.11.
"$PIP_PYTHON" - "$OUT.tmp/requirements.txt" >"$OUT.tmp/download.txt" <<'PY'
import sys
from pip._vendor.packaging.markers import Marker
base = {"implementation_name": "cpython", "platform_python_implementation": "CPython",
        "sys_platform": "linux", "os_name": "posix", "python_version": "3.11"}
for line in open(sys.argv[1]).read().replace("\\\n", " ").splitlines() + [""]:
    if not line.strip() or line.lstrip().startswith("#"):
        continue
    req, _, rest = line.partition(" --hash")
    name, _, marker = req.partition(";")
    if marker.strip() and not any(
        Marker(marker).evaluate({**base, "python_full_version": v}) for v in ("3.11.0", "3.11.99")
    ):
        continue
    print(name.strip(), "--hash" + rest if rest else "")
PY
"$PIP_PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
  --no-deps --require-hashes -r "$OUT.tmp/download.txt" -d "$OUT.tmp"
# The build backend (pyproject's [build-system]), to build the project's wheel inside the image.
backend="$(sed -n 's/^requires = \["\(hatchling[^"]*\)"\]/\1/p' pyproject.toml)"
"$PIP_PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
  -d "$OUT.tmp/build" "${backend:-hatchling}"
sha256sum uv.lock | cut -d' ' -f1 >"$OUT.tmp/uv.lock.sha256"
echo "$stamp" >"$OUT.tmp/.stamp"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
log "wheelhouse: $(find "$OUT" -name '*.whl' | wc -l) wheels, $(du -sh "$OUT" | cut -f1), $((SECONDS - start)) s"
