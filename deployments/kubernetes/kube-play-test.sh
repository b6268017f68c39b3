#!/usr/bin/env bash
# `make image-test`: the images and the Kubernetes manifests, end to end on this machine.
#
#  1. deployments/images/build.sh (installs podman/mmdebstrap if missing, builds the images)
#  2. `podman kube play` demo-backends.yaml and tdspool.yaml on a Podman network
#  3. from a client container on that network (kubecheck, go-mssqldb):
#     - every bucket reached through each of the two tdspool pods answers as itself
#     - admin port closed to other pods; 9902 serves /ready and /stats/prometheus only
#     - the container runs as uid 10001 and Envoy loaded the module (ABI matched)
#     - graceful drain (the preStop hook, run with podman exec because kube play does not run
#       lifecycle hooks): a held session keeps working, new connections are refused once the
#       drain time is over while /stats/prometheus and /ready still answer, and the hook
#       returns as soon as the session ends
#  4. `podman kube down` and the network removed, also on failure.
#
# Needs root. Takes a few minutes (the first run also makes the Debian root filesystems).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CONTAINERS_CONF=$root/deployments/images/containers.conf
net=tdspool-kube-test
step() { printf '\n== %s\n' "$*"; }

step "build the images"
"$root/deployments/images/build.sh"

cleanup() ( # a subshell: its `set +e` must not switch off errexit for the test
  set +e
  podman rm -f -t 0 tdspool-kubecheck-hold >/dev/null 2>&1
  podman kube down "$here/tdspool.yaml" >/dev/null 2>&1
  podman kube down "$here/demo-backends.yaml" >/dev/null 2>&1
  podman network rm -f "$net" >/dev/null 2>&1
  [ -z "${logs:-}" ] || rm -rf "$logs"
)
cleanup   # what an interrupted run left
logs=$(mktemp -d)
trap cleanup EXIT

step "podman kube play (network $net)"
podman network create "$net" >/dev/null
podman kube play --network "$net" "$here/demo-backends.yaml" >/dev/null
podman kube play --network "$net" "$here/tdspool.yaml" >/dev/null
# kube play can report containers that failed to start and still exit 0: every container of
# every pod must be running.
containers() { # NAME STATE of every container in the stack's pods
  for p in $(podman pod ps --filter "network=$net" --format '{{.Name}}'); do
    podman ps -a --filter "pod=$p" -q | xargs -r podman inspect --format '{{.Name}} {{.State.Status}}'
  done
}
for _ in $(seq 30); do containers | grep -qv ' running$' || break; sleep 1; done
containers | grep -v -- '-infra ' | sort
if containers | grep -v ' running$'; then echo "not every container is running"; exit 1; fi
pods=$(podman pod ps --filter "network=$net" --format '{{.Name}}' | grep '^tdspool-pod' | sort)
[ "$(echo "$pods" | wc -l)" = 2 ] || { echo "want the Deployment's 2 tdspool pods, have: $pods"; exit 1; }
pod=$(echo "$pods" | head -1)
envoy=$pod-envoy
addr=$pod:1433

kubecheck() { # ARGS...: the client container on the stack's network
  podman run --rm --network "$net" -v "$root/bin/images/kubecheck:/usr/local/bin/kubecheck:ro" \
    localhost/tdspool-base:bookworm /usr/local/bin/kubecheck -addr "$addr" "$@"
}

step "go-mssqldb through each tdspool pod to every bucket"
for p in $pods; do
  echo "-- through $p"
  podman run --rm --network "$net" -v "$root/bin/images/kubecheck:/usr/local/bin/kubecheck:ro" \
    localhost/tdspool-base:bookworm /usr/local/bin/kubecheck -addr "$p:1433" -mode buckets
done

step "what the pod exposes"
kubecheck -mode endpoints
uid=$(podman exec "$envoy" id -u)
[ "$uid" = 10001 ] || { echo "tdspool runs as uid $uid, want 10001"; exit 1; }
echo "tdspool container runs as uid $uid"
podman logs "$envoy" 2>&1 | grep -o 'Dynamic module ABI version .* matched.' | head -1 | grep . \
  || { echo "Envoy did not log a matched module ABI"; podman logs "$envoy" 2>&1 | tail -20; exit 1; }

step "graceful drain (the preStop hook)"
podman run -d --name tdspool-kubecheck-hold --network "$net" \
  -v "$root/bin/images/kubecheck:/usr/local/bin/kubecheck:ro" localhost/tdspool-base:bookworm \
  /usr/local/bin/kubecheck -addr "$addr" -mode hold -for 15s >/dev/null
for _ in $(seq 60); do podman logs tdspool-kubecheck-hold 2>&1 | grep -q 'holding a session' && break; sleep 0.5; done
podman logs tdspool-kubecheck-hold 2>&1 | grep 'holding a session'
start=$SECONDS
podman exec "$envoy" /usr/local/bin/tdspool-drain 40 >"$logs/drain" 2>&1 &
drain=$!
sleep 8    # Envoy's --drain-time-s (5 s) during which draining listeners still accept
kubecheck -mode refused
kubecheck -mode endpoints   # the metrics listener is not drained: still scraped, still /ready
hold_rc=$(podman wait tdspool-kubecheck-hold)
podman logs tdspool-kubecheck-hold 2>&1 | tail -1
[ "$hold_rc" = 0 ] || { echo "the held session failed during the drain"; exit 1; }
wait "$drain"
cat "$logs/drain"
took=$((SECONDS - start))
grep -q 'no client connection left' "$logs/drain" || { echo "the drain hook did not see the sessions end"; exit 1; }
((took < 40)) || { echo "the drain hook waited $took s: it should return when the last session ends"; exit 1; }
echo "drain hook returned after $took s"

step "image-test passed"
