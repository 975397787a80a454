#!/usr/bin/env bash
# The product on a kind cluster, for users with Docker (these project machines have no Docker
# engine: `make demo` runs the same product on the local stack instead, and CI never runs this).
#
#   hack/kind-up.sh            # cluster + image + chart + demo dependencies + example pipeline
#   kind delete cluster --name cass-cdc-pg
#
# Needs: docker, kind, kubectl, helm on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=${CLUSTER:-cass-cdc-pg}
IMAGE=${IMAGE:-cass-cdc-pg:dev}
for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "kind-up: $tool is required" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "kind-up: no Docker engine; use 'make demo'" >&2; exit 1; }

kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
kubectl config use-context "kind-$CLUSTER" >/dev/null

echo "==> building $IMAGE (make wheelhouse, then docker build) and loading it into kind"
make wheelhouse
docker build -t "$IMAGE" .
docker build -t cass-cdc-pg-debezium:dev -f hack/kind/debezium.Dockerfile hack/kind
kind load docker-image --name "$CLUSTER" "$IMAGE" cass-cdc-pg-debezium:dev

echo "==> demo dependencies: PostgreSQL, Redis, OpenBao, Kafka, Cassandra + Debezium agent"
kubectl create namespace cdc-demo --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -n cdc-demo -f hack/kind/dependencies.yaml
kubectl rollout status -n cdc-demo statefulset/cassandra --timeout=600s
kubectl rollout status -n cdc-demo deploy/postgres deploy/redis deploy/openbao deploy/kafka --timeout=300s

echo "==> installing the operator chart"
repo=${IMAGE%:*}; tag=${IMAGE##*:}
helm upgrade --install cass-cdc-pg charts/cass-cdc-pg -n cdc-system --create-namespace --wait \
  --set image.repository="$repo" --set image.tag="$tag" --set image.pullPolicy=Never

echo "==> credentials in OpenBao and the example pipeline"
kubectl exec -n cdc-demo deploy/openbao -- sh -c \
  'BAO_ADDR=http://127.0.0.1:8200 BAO_TOKEN=root bao kv put secret/cdc-demo/postgres username=cdc password=cdc'
kubectl create secret generic vault-token -n cdc-demo --from-literal=token=root \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl exec -n cdc-demo cassandra-0 -c cassandra -- cqlsh -e "
  CREATE KEYSPACE IF NOT EXISTS shop WITH replication = {'class':'SimpleStrategy','replication_factor':1};
  CREATE TABLE IF NOT EXISTS shop.customers (id uuid PRIMARY KEY, name text, email text, tier int);
  CREATE TABLE IF NOT EXISTS shop.orders (customer_id uuid, order_id timeuuid, status text,
    total decimal, items frozen<list<text>>, placed_at timestamp,
    PRIMARY KEY (customer_id, order_id)) WITH CLUSTERING ORDER BY (order_id DESC);"
kubectl apply -f hack/kind/pipeline.yaml
kubectl wait -n cdc-demo cdcp/shop --for=condition=Ready --timeout=300s || true
kubectl get cdcpipelines,tablereplications -n cdc-demo
cat <<'TXT'

The agent beside Cassandra reads its configuration from the operator's ConfigMap shop-debezium
(mounted into the cassandra-0 Pod). Write into Cassandra and watch PostgreSQL:
  kubectl exec -n cdc-demo cassandra-0 -c cassandra -- cqlsh -e "INSERT INTO shop.customers (id, name) VALUES (uuid(), 'kind')"
  kubectl exec -n cdc-demo deploy/postgres -- psql -U cdc -c 'select * from shop.customers'
TXT
