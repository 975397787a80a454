#!/usr/bin/env bash
# Builds the local base image localhost/python-base:3.11 from Debian packages alone, so that
# `make image` needs no registry other than Debian's (the Dockerfile's default base,
# python:3.11-slim-bookworm, lives on Docker Hub, which these machines cannot reach).
#
#   hack/image/base.sh           build the image if it is missing or stale, print its name
#   hack/image/base.sh --key     print the version key only
#
# debootstrap --variant=minbase bookworm + python3 python3-venv (bookworm's python3 is 3.11)
# into ${XDG_CACHE_HOME:-~/.cache}/cass-cdc-pg/python-base-<key>/rootfs (once per key), then
# `buildah from scratch` + `buildah copy` + `buildah commit`. The key hashes the suite, the package
# list and this script, and is stored as the image's label io.casscdc.base-key: a changed script
# rebuilds, an unchanged one is a no-op.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates,netbase,tzdata
IMAGE="${BASE_IMAGE:-localhost/python-base:3.11}"

KEY="$(cat "$0" | sha256sum | cut -c1-12)-$SUITE"
[[ "${1:-}" == --key ]] && { echo "$KEY"; exit 0; }

need_buildah

if [[ "$(bah inspect --type image --format '{{index .ImageAnnotations "io.casscdc.base-key"}}' \
      "$IMAGE" 2>/dev/null || true)" == "$KEY" ]]; then
  echo "$IMAGE"
  exit 0
fi

# The Debian mirror this machine already uses (sources.list or deb822 .sources), else the CDN.
MIRROR="${DEBIAN_MIRROR:-$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
  /etc/apt/sources.list.d/ 2>/dev/null | head -n1 | tr -d ' ' || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

DIR="$CACHE/python-base-$KEY"
ROOTFS="$DIR/rootfs"
if [[ ! -f "$DIR/done" ]]; then
  [[ $(id -u) == 0 ]] || die "debootstrap needs root"
  start=$SECONDS
  log "debootstrap --variant=minbase $SUITE from $MIRROR (+ $PACKAGES) into $ROOTFS"
  rm -rf "$DIR"
  mkdir -p "$DIR"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS.tmp" "$MIRROR" \
    >"$DIR/debootstrap.log" 2>&1 || die "debootstrap failed; see $DIR/debootstrap.log"
  # What a container image does not need: downloaded .debs, package lists, docs, man pages.
  rm -rf "$ROOTFS.tmp"/var/cache/apt/archives/*.deb "$ROOTFS.tmp"/var/lib/apt/lists/* \
    "$ROOTFS.tmp"/usr/share/man/* "$ROOTFS.tmp"/usr/share/info/* \
    "$ROOTFS.tmp"/var/log/*.log "$ROOTFS.tmp"/var/cache/debconf/*-old
  find "$ROOTFS.tmp/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  # The same sources a Dockerfile RUN apt-get would use inside the image.
  printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$ROOTFS.tmp/etc/apt/sources.list"
  mv "$ROOTFS.tmp" "$ROOTFS"
  "$ROOTFS/usr/bin/python3" --version >/dev/null 2>&1 || true
  touch "$DIR/done"
  log "rootfs ready in $((SECONDS - start)) s ($(du -sh "$ROOTFS" | cut -f1))"
fi

version="$(chroot "$ROOTFS" python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
[[ "$version" == 3.11.* ]] || die "the rootfs has Python $version, expected 3.11"

log "committing $IMAGE (Python $version)"
ctr="$(bah from scratch)"
trap 'bah rm "$ctr" >/dev/null 2>&1 || true' EXIT
bah copy --quiet "$ctr" "$ROOTFS/" / >/dev/null
bah config \
  --env LANG=C.UTF-8 \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env PYTHON_VERSION="$version" \
  --cmd python3 \
  --annotation io.casscdc.base-key="$KEY" \
  --label io.casscdc.base-key="$KEY" \
  --label org.opencontainers.image.description="Debian $SUITE minbase + python3 $version (hack/image/base.sh)" \
  "$ctr"
bah commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
trap - EXIT
echo "$IMAGE"
