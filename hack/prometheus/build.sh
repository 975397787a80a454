#!/usr/bin/env bash
# Builds the Prometheus server and promtool (its rule checker and rule unit-test runner) from the
# Go module proxy, from the one module hack/k8s/module.sh resolves for every Go tool (its pins
# are there): no release tarball, no container engine, and the packages Prometheus shares with
# Kubernetes (grpc, OpenTelemetry, client_golang, ...) already in the build cache once
# hack/k8s/build.sh has run.
#
#   hack/prometheus/build.sh            build them if missing, then print KEY=VALUE lines
#   hack/prometheus/build.sh --quiet    the same, silent when they are already built
#   hack/prometheus/build.sh --print    print those lines without building
#   hack/prometheus/build.sh --latest   list the newest versions the module proxy serves
#
# Prometheus 3.x is published to the module proxy as github.com/prometheus/prometheus
# v0.3MM.P for release 3.MM.P. Both binaries come from one `go build` (they share nearly every
# package) with the module's tag set, whose `remove_all_sd` drops the service-discovery plugins
# and keeps static and file configs, all the tests here use. The server is built without the
# `builtinassets` tag: no web UI (it would need the React build), the HTTP API works. The
# binaries land in ${XDG_CACHE_HOME:-~/.cache}/cass-cdc-pg/prometheus-<version>/bin, stamped
# with what built them, so a second run is a no-op. Nothing builds them eagerly: `hack/stack
# tool promtool|prometheus` (and the tests that need one) call this the first time either is
# wanted. Progress goes to stderr; stdout only carries the KEY=VALUE lines.
set -euo pipefail

QUIET=0
log() { printf 'prometheus-build: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "${1:-}" in
  --print | --quiet | --latest | "") ;;
  -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument $1 (try --help)" ;;
esac
# shellcheck source=hack/k8s/module.sh
source "$(dirname "${BASH_SOURCE[0]}")/../k8s/module.sh"
DIR="$CACHE/prometheus-$PROMETHEUS_VERSION"

print_vars() {
  cat <<EOF
PROMETHEUS_VERSION=$PROMETHEUS_VERSION
PROMETHEUS_MODULE_VERSION=$PROMETHEUS_MODULE_VERSION
PROMTOOL=$DIR/bin/promtool
PROMETHEUS=$DIR/bin/prometheus
EOF
}

case "${1:-}" in
  --print) print_vars; exit 0 ;;
  --quiet) QUIET=1 ;;
  --latest)
    GOFLAGS="" "$GO" list -m -versions github.com/prometheus/prometheus | tr ' ' '\n' |
      grep -v -- - | sort -V | tail -n 3
    exit 0 ;;
esac

# One build at a time per version (two test processes wanting promtool would build twice).
mkdir -p "$DIR"
exec 9>"$DIR/.build.lock"
if ! flock -n 9; then
  log "another build holds $DIR/.build.lock; waiting"
  flock 9
fi
module_ready
KEY="promtool+prometheus $PROMETHEUS_VERSION $MODULE_KEY"
if ! stamp_ok "$DIR" "$KEY" promtool prometheus; then
  T0=$(date +%s)
  log "prometheus $PROMETHEUS_VERSION: building cmd/promtool and cmd/prometheus ($PROMETHEUS_MODULE_VERSION; a few minutes cold on 2 cores)"
  # The version the binaries report (`--version`), as Prometheus' own build stamps it.
  ldflags="-s -w"
  for kv in "Version=$PROMETHEUS_VERSION" Branch=HEAD Revision= BuildUser=cass-cdc-pg \
    "BuildDate=$(date -u +%Y%m%d-%H:%M:%S)"; do
    ldflags+=" -X github.com/prometheus/common/version.$kv"
  done
  rm -rf "$DIR/bin.tmp"
  mkdir -p "$DIR/bin.tmp"
  module_build "$DIR/bin.tmp" "$ldflags" github.com/prometheus/prometheus/cmd/promtool \
    github.com/prometheus/prometheus/cmd/prometheus
  install_bin "$DIR" "$KEY"
  log "prometheus $PROMETHEUS_VERSION: promtool and prometheus built in $(($(date +%s) - T0))s"
elif [[ $QUIET == 0 ]]; then
  log "prometheus $PROMETHEUS_VERSION: promtool and prometheus cached in $DIR/bin"
fi
print_vars
