#!/usr/bin/env bash
# `make image`: builds the repo's Dockerfile with buildah (chroot isolation, no container engine)
# on the local Debian base (hack/image/base.sh), installing from build/wheelhouse
# (hack/image/wheelhouse.sh, run by make first). Layers are cached (`--layers`): a rebuild with
# unchanged sources takes seconds; a source change rebuilds only the project's wheel and layer.
#
# Tags: localhost/cass-cdc-pg:<pyproject version> (what the Helm chart's appVersion names) and
# localhost/cass-cdc-pg:dev. IMAGE_REPO moves the repository name.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"
need_buildah
cd "$REPO"
image_lock

[[ -f build/wheelhouse/requirements.txt ]] || die "no build/wheelhouse: run \`make wheelhouse\`"
IMAGE_REPO="${IMAGE_REPO:-localhost/cass-cdc-pg}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)"

start=$SECONDS
base="$("$HERE/base.sh")"
log "buildah bud --isolation chroot --layers (BASE=$base)"
bah bud --isolation chroot --layers --quiet \
  --build-arg BASE="$base" \
  --label org.opencontainers.image.version="$version" \
  -f Dockerfile -t "$IMAGE_REPO:$version" -t "$IMAGE_REPO:dev" . >/dev/null
log "built $IMAGE_REPO:$version ($IMAGE_REPO:dev) in $((SECONDS - start)) s," \
  "$(bah images --format '{{.Size}}' "$IMAGE_REPO:$version" | head -n1)"
