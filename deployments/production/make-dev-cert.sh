#!/usr/bin/env bash
# Makes a development CA and a listener certificate for the compose stack:
#   tls/ca.crt                      trust this on clients (or use TrustServerCertificate=true)
#   tls/server.crt, tls/server.key  the listener certificate (envoy.yaml: TDS 8 and TDS 7 TLS)
# Names: localhost, 127.0.0.1 and any extra DNS names given as arguments, e.g.
#   ./make-dev-cert.sh sql.example.com billing.sql.example.com reporting.sql.example.com
# Production: use certificates from your CA instead; key readable by Envoy's user only.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p tls
san="DNS:localhost,IP:127.0.0.1"
for n in "$@"; do san="$san,DNS:$n"; done
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=tdspool dev CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout tls/ca.key -out tls/ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=${1:-localhost}" -keyout tls/server.key -out tls/server.csr 2>/dev/null
openssl x509 -req -in tls/server.csr -CA tls/ca.crt -CAkey tls/ca.key -CAcreateserial -days 30 \
  -extfile <(printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$san") \
  -out tls/server.crt 2>/dev/null
rm -f tls/server.csr tls/ca.srl
chmod 644 tls/server.key   # the Envoy image runs as a non-root user; dev only
echo "wrote $(pwd)/tls: ca.crt server.crt server.key ($san)"
