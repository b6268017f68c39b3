#!/usr/bin/env bash
# Validates the Envoy config each mesh example yields (render.py) with `envoy --mode validate`
# and the module loaded. Run by `make ops-check`.
# Env: ENVOY (default .venv/bin/envoy), TDSPOOL_MODULE_DIR (default bin/, holding libtdspool.so).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ENVOY=${ENVOY:-$root/.venv/bin/envoy}
MODULE_DIR=${TDSPOOL_MODULE_DIR:-$root/bin}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$here/render.py" "$tmp"
for f in "$tmp"/*.json; do
  ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$MODULE_DIR" "$ENVOY" --mode validate -c "$f" -l warn
done
# Per-listener and per-bucket stat names must become labels (listener, bucket) in Prometheus.
python3 "$here/check_stats_tags.py" "$tmp"/*.json "$root/deployments/production/envoy.yaml"
