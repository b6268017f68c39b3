#!/usr/bin/env bash
# Builds the tdspool images with Podman from a Debian base made by mmdebstrap (`make image`):
#
#   localhost/tdspool-base:bookworm   Debian bookworm, variant "essential" (no apt, no docs)
#   localhost/tdspool:dev             + Envoy 1.39.3 and libtdspool.so, user 10001
#   localhost/tdspool-standin:dev     + the SQL Server stand-in, user 10002
#   localhost/tdspool-redis:dev       Debian bookworm essential + redis-server, user redis
#
# Reproducible: the root filesystems and the Debian-only images carry a fixed ROOTFS_EPOCH, the
# layers with this repository's files SOURCE_DATE_EPOCH (default: the commit time of HEAD), so
# the same commit and the same Debian mirror state give the same digests. Root filesystems are cached in bin/images/*.tar;
# IMAGE_FRESH=1 remakes them.
# Prints each image's versions and digest at the end.
#
# Needs root (mmdebstrap --mode=root, rootful Podman); installs podman, runc, mmdebstrap from
# Debian when they are missing. Env: SUITE (bookworm), SOURCE_DATE_EPOCH.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
export CONTAINERS_CONF=$here/containers.conf
SUITE=${SUITE:-bookworm}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
ROOTFS_EPOCH=${ROOTFS_EPOCH:-1735689600}   # 2025-01-01: file times inside the Debian root filesystems
out=$root/bin/images
mkdir -p "$out"

need=""
for p in podman runc mmdebstrap netavark aardvark-dns; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
if [ -n "$need" ]; then
  echo "apt-get install$need"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
fi

# Root filesystems. path-exclude drops documentation and translations (copyright files stay).
rootfs() { # NAME [PACKAGES]
  local tar=$out/$1.tar
  if [ -s "$tar" ] && [ -z "${IMAGE_FRESH:-}" ]; then return; fi
  echo "mmdebstrap $SUITE → $tar ${2:+(+ $2)}"
  SOURCE_DATE_EPOCH=$ROOTFS_EPOCH mmdebstrap --quiet --mode=root --variant=essential ${2:+--include=$2} \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    "$SUITE" "$out/$1.partial.tar"   # the .tar suffix makes mmdebstrap write a tarball
  mv "$out/$1.partial.tar" "$tar"
}
rootfs base
rootfs redis redis-server

# What goes into the images: the module (make build), Envoy from .venv (make setup), the
# stand-in and the kube-play check client as static Go binaries.
make -s build setup-envoy
CGO_ENABLED=0 go build -trimpath -o "$out/standin" ./standin/cmd/standin
CGO_ENABLED=0 go build -trimpath -o "$out/kubecheck" ./deployments/kubernetes/kubecheck

ctx=$out/ctx
rm -rf "$ctx" && mkdir -p "$ctx"
for name in base redis standin tdspool; do cp -r "$here/$name" "$ctx/$name"; done
ln -f "$out/base.tar" "$ctx/base/rootfs.tar"
ln -f "$out/redis.tar" "$ctx/redis/rootfs.tar"
cp "$out/standin" "$ctx/standin/standin"
cp "$(readlink -f .venv/bin/envoy)" "$ctx/tdspool/envoy"
cp bin/libtdspool.so "$ctx/tdspool/libtdspool.so"

# --timestamp sets every file time and the creation time. Podman's build cache ignores it (a
# cached layer keeps the time of whichever build made it first), hence --no-cache.
build() { # EPOCH TAG DIR
  podman build --quiet --no-cache --timestamp "$1" --network=none -t "$2" "$ctx/$3" >/dev/null
}
build "$ROOTFS_EPOCH" localhost/tdspool-base:$SUITE base
build "$ROOTFS_EPOCH" localhost/tdspool-redis:dev redis
build "$SOURCE_DATE_EPOCH" localhost/tdspool-standin:dev standin
build "$SOURCE_DATE_EPOCH" localhost/tdspool:dev tdspool

run() { podman run --rm --network=none "$@"; }
envoy_version=$(run --entrypoint /usr/local/bin/envoy localhost/tdspool:dev --version | grep -o '[0-9]*\.[0-9]*\.[0-9]*/[^ ]*' | head -1)
redis_version=$(run localhost/tdspool-redis:dev --version | grep -o 'v=[0-9.]*')
commit=$(git describe --always --dirty)
printf '\n%-34s %-10s %-70s %s\n' IMAGE SIZE DIGEST CONTENTS
show() { # IMAGE CONTENTS
  printf '%-34s %-10s %-70s %s\n' "$1" "$(podman image inspect --format '{{.Size}}' "$1" | numfmt --to=si)" \
    "$(podman image inspect --format '{{.Digest}}' "$1")" "$2"
}
show localhost/tdspool-base:$SUITE "Debian $SUITE essential, epoch $ROOTFS_EPOCH"
show localhost/tdspool:dev "Envoy $envoy_version, libtdspool.so of $commit"
show localhost/tdspool-standin:dev "stand-in of $commit"
show localhost/tdspool-redis:dev "redis-server $redis_version"
