#!/usr/bin/env bash
# Checks deployments/production/envoy.yaml with `envoy --mode validate` on this machine.
#
# The bootstrap names production paths (/etc/tdspool/tls/...) and needs $TDSPOOL_REDIS_PASSWORD,
# and tdspool loads its certificate while Envoy validates. So this script makes a throwaway
# self-signed certificate in a temp dir, rewrites /etc/tdspool/tls/ to that dir in a temp copy
# of the config, sets a dummy password and runs the validator. Nothing else is changed: the
# listener ports, cluster host names and Redis address are checked as written (validate mode
# binds no port, resolves no name and connects to nothing).
#
#   deployments/production/validate.sh              # the config as shipped
#   deployments/production/validate.sh --tds8-upstream
#                                                   # also with the commented TDS 8 upstream
#                                                   # TLS block of the "reporting" cluster enabled
#                                                   # (Envoy's side; the bucket stays PLAINTEXT)
# Env: ENVOY (default .venv/bin/envoy), TDSPOOL_MODULE_DIR (default bin/, holding libtdspool.so;
# `make build` makes it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ENVOY=${ENVOY:-$root/.venv/bin/envoy}
MODULE_DIR=${TDSPOOL_MODULE_DIR:-$root/bin}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tdspool.validate" \
  -keyout "$tmp/tls/server.key" -out "$tmp/tls/server.crt" 2>/dev/null
cp "$tmp/tls/server.crt" "$tmp/tls/sql-ca.crt"   # CA for the optional upstream TLS block

sed "s#/etc/tdspool/tls/#$tmp/tls/#g" "$here/envoy.yaml" > "$tmp/envoy.yaml"
if [[ ${1:-} == --tds8-upstream ]]; then
  # Uncomment the "# transport_socket:" block of the reporting cluster (the lines from
  # "# transport_socket:" up to the first non-comment line).
  python3 - "$tmp/envoy.yaml" <<'EOF'
import re, sys
path = sys.argv[1]
lines = open(path).read().split("\n")
out, active = [], False
for line in lines:
    if re.match(r"^    # transport_socket:$", line):
        active = True
    if active and not re.match(r"^    #", line):
        active = False
    out.append(re.sub(r"^    # ", "    ", line) if active else line)
text = "\n".join(out)
# The bucket keeps "backend_encryption": "PLAINTEXT": the filter refuses any other value until
# it has an encrypted backend leg, so this mode checks Envoy's side of a TDS 8 upstream only.
open(path, "w").write(text)
EOF
  grep -q 'UpstreamTlsContext' "$tmp/envoy.yaml"
  grep -q '^    transport_socket:' "$tmp/envoy.yaml"
fi

TDSPOOL_REDIS_PASSWORD=validate-only ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$MODULE_DIR" \
  "$ENVOY" --mode validate -c "$tmp/envoy.yaml" -l warn
