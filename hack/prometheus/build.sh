#!/usr/bin/env bash
# Builds the Prometheus server and promtool (its rule checker and rule unit-test runner) from the
# Go module proxy, the same way hack/k8s/build.sh builds helm: no release tarball, no container
# engine.
#
#   hack/prometheus/build.sh            build them if missing, then print KEY=VALUE lines
#   hack/prometheus/build.sh --quiet    the same, silent when they are already built
#   hack/prometheus/build.sh --print    print those lines without building
#   hack/prometheus/build.sh --latest   list the newest versions the module proxy serves
#
# Prometheus 3.x is published to the module proxy as github.com/prometheus/prometheus
# v0.3MM.P for release 3.MM.P (its go.mod has no replace lines, so `go install pkg@version`
# builds exactly the release's dependency graph). Both binaries come from one `go install`
# (they share nearly every package, so one compile serves both) with the build tag
# `remove_all_sd`: it drops the service-discovery plugins (AWS, Azure, GCE, Kubernetes, ...;
# plugins/plugin_*.go are tagged `!remove_all_sd`) and keeps static and file configs, all the
# tests here use, at a fraction of the compile time. The server is built without the
# `builtinassets` tag: no web UI (it would need the React build), the HTTP API works. The
# binaries land in ${XDG_CACHE_HOME:-~/.cache}/cass-cdc-pg/prometheus-<version>/bin, stamped
# with what built them, so a second run is a no-op. Nothing builds them eagerly: `hack/stack
# tool promtool|prometheus` (and the tests that need one) call this the first time either is
# wanted. Progress goes to stderr; stdout only carries the KEY=VALUE lines.
set -euo pipefail

# ---- pin: Prometheus 3.16.0 ---------------------------------------------------------------
PROMETHEUS_VERSION=3.16.0
# -------------------------------------------------------------------------------------------

MINOR=${PROMETHEUS_VERSION#3.}
MODULE_VERSION="v0.$((${MINOR%%.*} + 300)).${MINOR#*.}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/cass-cdc-pg"
DIR="$CACHE/prometheus-$PROMETHEUS_VERSION"

print_vars() {
  cat <<EOF
PROMETHEUS_VERSION=$PROMETHEUS_VERSION
PROMETHEUS_MODULE_VERSION=$MODULE_VERSION
PROMTOOL=$DIR/bin/promtool
PROMETHEUS=$DIR/bin/prometheus
EOF
}

QUIET=0
log() { printf 'prometheus-build: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

find_go() {
  if [[ -n "${GO:-}" ]]; then echo "$GO"; return; fi
  command -v go 2>/dev/null && return
  [[ -x /usr/local/go/bin/go ]] && { echo /usr/local/go/bin/go; return; }
  die "no Go toolchain: install Go 1.26+ (or set GO=/path/to/go)"
}

case "${1:-}" in
  --print) print_vars; exit 0 ;;
  --quiet) QUIET=1 ;;
  --latest | "") ;;
  -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument $1 (try --help)" ;;
esac

GO=$(find_go)
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" # never fetch a toolchain behind the user's back
export CGO_ENABLED=0
# The compiler's GC at 400 instead of 100: 13 % less CPU for the same build (helm, cold cache:
# 255 -> 221 CPU-s, peak RSS 1.0 -> 1.07 GiB); the cold `make test` is CPU-bound on 2 cores.
export GOGC="${GOGC:-400}"

if [[ "${1:-}" == "--latest" ]]; then
  GOFLAGS="" "$GO" list -m -versions github.com/prometheus/prometheus | tr ' ' '\n' |
    grep -v -- - | sort -V | tail -n 3
  exit 0
fi

# What the binaries were built with: a change here (version, tags, the set of binaries) makes an
# older cache rebuild.
TAGS=remove_all_sd
KEY="promtool+prometheus $PROMETHEUS_VERSION ($MODULE_VERSION) tags=$TAGS"
built() {
  [[ -x "$DIR/bin/promtool" && -x "$DIR/bin/prometheus" && -f "$DIR/bin/.stamp" &&
    "$(cat "$DIR/bin/.stamp")" == "$KEY" ]]
}

if ! built; then
  mkdir -p "$DIR"
  # One build at a time per version (two test processes wanting promtool would build twice).
  exec 9>"$DIR/.build.lock"
  if ! flock -n 9; then
    log "another build holds $DIR/.build.lock; waiting"
    flock 9
  fi
fi
if ! built; then
  T0=$(date +%s)
  log "prometheus $PROMETHEUS_VERSION: building github.com/prometheus/prometheus/cmd/{promtool,prometheus}@$MODULE_VERSION -tags $TAGS (a few minutes cold on 2 cores)"
  # The version the binaries report (`--version`), as Prometheus' own build stamps it.
  ldflags="-s -w"
  for kv in "Version=$PROMETHEUS_VERSION" Branch=HEAD Revision= BuildUser=cass-cdc-pg \
    "BuildDate=$(date -u +%Y%m%d-%H:%M:%S)"; do
    ldflags+=" -X github.com/prometheus/common/version.$kv"
  done
  rm -rf "$DIR/bin.tmp"
  mkdir -p "$DIR/bin.tmp"
  # Builds are CPU-bound: stay out of the way of whatever else runs on the machine.
  GOBIN="$DIR/bin.tmp" GOFLAGS=-buildvcs=false nice -n "${PROMETHEUS_BUILD_NICE:-19}" \
    "$GO" install -trimpath -tags "$TAGS" -ldflags "$ldflags" \
    "github.com/prometheus/prometheus/cmd/promtool@$MODULE_VERSION" \
    "github.com/prometheus/prometheus/cmd/prometheus@$MODULE_VERSION"
  printf '%s' "$KEY" >"$DIR/bin.tmp/.stamp"
  "$GO" env GOVERSION >"$DIR/bin.tmp/.go-version"
  rm -rf "${DIR:?}/bin"
  mv "$DIR/bin.tmp" "$DIR/bin"
  log "prometheus $PROMETHEUS_VERSION: promtool and prometheus built in $(($(date +%s) - T0))s"
elif [[ $QUIET == 0 ]]; then
  log "prometheus $PROMETHEUS_VERSION: promtool and prometheus cached in $DIR/bin"
fi
print_vars
