#!/usr/bin/env bash
# Builds the local Kubernetes control plane from the Go module proxy (no container engine, no
# release tarballs): kube-apiserver, kube-controller-manager, kube-scheduler and kubectl from
# k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3, helm from helm.sh/helm/v3, all from
# the one module hack/k8s/module.sh resolves for every Go tool (Prometheus too: packages they
# share compile once).
#
#   hack/k8s/build.sh            build what is missing, then print KEY=VALUE lines (paths, pins)
#   hack/k8s/build.sh --quiet    the same, silent when everything is already built
#   hack/k8s/build.sh --print    print those lines without building
#   hack/k8s/build.sh --latest   list the newest versions the module proxy serves (no build)
#
# Binaries land in ${XDG_CACHE_HOME:-~/.cache}/cass-cdc-pg/{k8s,etcd,helm}-<version>/bin, each
# directory stamped with what built it, so a second run is a no-op. Modules and the build cache
# are Go's defaults (`go env GOMODCACHE GOCACHE`). Progress and timings go to stderr; stdout only
# carries the KEY=VALUE lines that hack/stackctl/k8s.py reads.
set -euo pipefail

QUIET=0
log() { printf 'k8s-build: %s\n' "$*" >&2; }
note() { [[ $QUIET == 1 ]] || log "$@"; } # only worth saying when not quiet
die() { log "error: $*"; exit 1; }

case "${1:-}" in
  --print | --quiet | --latest | "") ;;
  -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument $1 (try --help)" ;;
esac
# shellcheck source=hack/k8s/module.sh
source "$(dirname "${BASH_SOURCE[0]}")/module.sh"
K8S_DIR="$CACHE/k8s-$K8S_VERSION"
ETCD_DIR="$CACHE/etcd-$ETCD_VERSION"
HELM_DIR="$CACHE/helm-$HELM_VERSION"

print_vars() {
  cat <<EOF
K8S_VERSION=$K8S_VERSION
ETCD_VERSION=$ETCD_VERSION
HELM_VERSION=$HELM_VERSION
K8S_BIN=$K8S_DIR/bin
ETCD_BIN=$ETCD_DIR/bin
HELM_BIN=$HELM_DIR/bin
EOF
}

case "${1:-}" in
  --print) print_vars; exit 0 ;;
  --quiet) QUIET=1 ;;
  --latest)
    for m in k8s.io/kubernetes go.etcd.io/etcd/server/v3 helm.sh/helm/v3; do
      printf '%-28s %s\n' "$m" "$(GOFLAGS="" "$GO" list -m -versions "$m" | tr ' ' '\n' | grep -v -- - | sort -V | tail -n 3 | tr '\n' ' ')"
    done
    exit 0 ;;
esac

mkdir -p "$CACHE"
# One build at a time per cache (two `hack/stack up k8s` racing would build twice).
exec 9>"$CACHE/.k8s-build.lock"
if ! flock -n 9; then
  log "another build holds $CACHE/.k8s-build.lock; waiting"
  flock 9
fi

T0=$(date +%s)
elapsed() { echo "$(($(date +%s) - $1))s"; }

# ---- Kubernetes ---------------------------------------------------------------------------
build_kubernetes() {
  local key="kubernetes $K8S_VERSION $MODULE_KEY"
  if stamp_ok "$K8S_DIR" "$key" "${K8S_BINARIES[@]}"; then
    note "kubernetes $K8S_VERSION: cached in $K8S_DIR/bin"
    return
  fi
  local t; t=$(date +%s)
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local build_date; build_date=$(date -u +'%Y-%m-%dT%H:%M:%SZ')
  local ldflags="-s -w" pkg kv
  # Both copies of the version variables: component-base serves /version, client-go is what
  # kubectl reports as its own client version. Without them everything says v0.0.0.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    for kv in "gitVersion=$K8S_VERSION" gitMajor=1 "gitMinor=$minor" gitCommit= \
      gitTreeState=clean "buildDate=$build_date"; do
      ldflags+=" -X $pkg.$kv"
    done
  done
  log "kubernetes $K8S_VERSION: building ${K8S_BINARIES[*]} (~7 min cold on 2 cores)"
  rm -rf "$K8S_DIR/bin.tmp"
  mkdir -p "$K8S_DIR/bin.tmp"
  module_build "$K8S_DIR/bin.tmp" "$ldflags" "${K8S_BINARIES[@]/#/k8s.io/kubernetes/cmd/}"
  install_bin "$K8S_DIR" "$key"
  log "kubernetes $K8S_VERSION: built in $(elapsed "$t")"
}

# ---- etcd ---------------------------------------------------------------------------------
build_etcd() {
  local key="etcd $ETCD_VERSION $MODULE_KEY"
  if stamp_ok "$ETCD_DIR" "$key" etcd etcdctl; then
    note "etcd $ETCD_VERSION: cached in $ETCD_DIR/bin"
    return
  fi
  local t; t=$(date +%s)
  log "etcd $ETCD_VERSION: building etcd, etcdctl"
  rm -rf "$ETCD_DIR/bin.tmp"
  mkdir -p "$ETCD_DIR/bin.tmp"
  # The server's main package is its module's root: `go build` names that binary "server".
  module_build "$ETCD_DIR/bin.tmp" "-s -w" go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3
  mv "$ETCD_DIR/bin.tmp/server" "$ETCD_DIR/bin.tmp/etcd"
  install_bin "$ETCD_DIR" "$key"
  log "etcd $ETCD_VERSION: built in $(elapsed "$t")"
}

# ---- helm ---------------------------------------------------------------------------------
build_helm() {
  local key="helm $HELM_VERSION $MODULE_KEY"
  if stamp_ok "$HELM_DIR" "$key" helm; then
    note "helm $HELM_VERSION: cached in $HELM_DIR/bin"
    return
  fi
  local t; t=$(date +%s)
  # helm's Makefile stamps its version and the Kubernetes version it assumes when it renders
  # without a cluster (Capabilities.KubeVersion): 1.<minor of its client-go>, here Kubernetes'
  # own (the module replaces client-go with the staging version of K8S_VERSION).
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  local p
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"
  done
  log "helm $HELM_VERSION: building"
  rm -rf "$HELM_DIR/bin.tmp"
  mkdir -p "$HELM_DIR/bin.tmp"
  module_build "$HELM_DIR/bin.tmp" "$ldflags" helm.sh/helm/v3/cmd/helm
  install_bin "$HELM_DIR" "$key"
  log "helm $HELM_VERSION: built in $(elapsed "$t")"
}

note "using $GO ($("$GO" env GOVERSION)), module cache $("$GO" env GOMODCACHE)"
module_ready
# Kubernetes first: the largest, and etcd and helm then find most of their packages built.
build_kubernetes
build_etcd
build_helm
note "all binaries ready in $(elapsed "$T0")"
print_vars
