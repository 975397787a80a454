# Shared by hack/image/*.sh (sourced): where things live and how buildah is called.
#
# Images live in buildah's default store (/var/lib/containers/storage as root, the overlay
# driver); IMAGE_STORAGE_DRIVER=vfs switches driver where overlay mounts are refused (slower,
# full copies per layer). The node agent (hack/stackctl/node.py) reads the same store.
# IMAGE_STORAGE_ROOT=<dir> builds into a separate store instead (e.g. to time a cold build);
# the node agent does not see such a store.
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/cass-cdc-pg"
IMAGE_STORAGE_DRIVER="${IMAGE_STORAGE_DRIVER:-overlay}"
STORE_ARGS=()
if [[ -n "${IMAGE_STORAGE_ROOT:-}" ]]; then
  STORE_ARGS=(--root "$IMAGE_STORAGE_ROOT" --runroot "$IMAGE_STORAGE_ROOT.run")
fi

log() { printf 'image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

bah() { buildah --storage-driver "$IMAGE_STORAGE_DRIVER" "${STORE_ARGS[@]}" "$@"; }

# buildah and debootstrap come from hack/packages.txt, installed by the project's one install step.
need_buildah() {
  command -v buildah >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 && return
  "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/hack/stack" deps >&2 \
    || die "the Debian packages the image needs are missing (see hack/stack doctor)"
}

# image_lock: one wheelhouse or image build at a time per checkout (the test suite builds the
# image in the background while tests that need it may ask for it too); held until exit.
image_lock() {
  mkdir -p "$REPO/build"
  exec 8>"$REPO/build/.image.lock"
  flock 8
}
