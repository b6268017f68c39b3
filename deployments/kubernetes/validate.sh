#!/usr/bin/env bash
# Validates the Envoy bootstrap in tdspool.yaml's ConfigMap with `envoy --mode validate` and
# the module loaded (tdspool's own config validation included). Run by `make ops-check`;
# `make image-test` runs the manifests themselves.
# Env: ENVOY (default .venv/bin/envoy), TDSPOOL_MODULE_DIR (default bin/, holding libtdspool.so).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ENVOY=${ENVOY:-$root/.venv/bin/envoy}
MODULE_DIR=${TDSPOOL_MODULE_DIR:-$root/bin}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$here/tdspool.yaml" "$tmp/envoy.yaml" <<'PY'
import sys, yaml
(cm,) = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap"]
open(sys.argv[2], "w").write(cm["data"]["envoy.yaml"])
PY
ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$MODULE_DIR" "$ENVOY" --mode validate -c "$tmp/envoy.yaml" -l warn
