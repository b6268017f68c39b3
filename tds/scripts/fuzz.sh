#!/bin/sh
# Runs every fuzz target in ./tds for FUZZTIME each (default 10m), one at
# a time. Intended for `make fuzz FUZZTIME=30s`.
set -e
cd "$(dirname "$0")/.."
T=${FUZZTIME:-10m}
for f in $(go test -list 'Fuzz.*' . | grep '^Fuzz'); do
	echo "== $f ($T)"
	go test -run XXX -fuzz "^$f\$" -fuzztime "$T" .
done
