#!/usr/bin/env bash
# Builds the ringcache container image without a registry, then checks that it runs.
#
#   deploy/image/build.sh                  # cargo build --release, base image, ringcache:dev
#   RINGCACHE_BINARY=path deploy/image/build.sh   # package a binary built elsewhere
#
# Environment: RINGCACHE_IMAGE (ringcache:dev), RINGCACHE_BASE_IMAGE (ringcache-base:dev),
# RINGCACHE_BINARY (skip cargo, use this binary; it must be built for this machine's libc).
#
# 1. The base image is `FROM scratch` filled on this machine: exactly the shared
#    libraries `ldd` lists for the binary and the dynamic loader (copied from the
#    host, so the binary runs against the glibc it was linked with), /etc/passwd and
#    /etc/group with an unprivileged `ringcache` user (10001), /tmp, and a static
#    busybox from Debian's busybox-static package (a shell for the compose file's
#    entrypoint, which needs the container's own address, `wget` for health checks,
#    `sleep` for a preStop hook on any Kubernetes version, `nc` for this script's
#    check). It is a tarball given to `docker import`: no Dockerfile stage, nothing
#    pulled.
#    Why not a Debian root from debootstrap + `docker import`: it takes minutes and a
#    Debian mirror, weighs ~100 MB more, and brings nothing the binary uses; the
#    binary needs only libc, libm, libgcc_s and the loader. The price of scratch is
#    that the libraries come from the build machine, so the image is rebuilt with the
#    binary (this script always does both).
# 2. The ringcache image is deploy/image/Dockerfile over that base, with the binary
#    stripped of its debug info (the release profile keeps line tables for
#    backtraces; an image does not need them) as its whole build context.
# 3. Checks: `--version`, the user is not root, and a container started like a
#    cluster node answers `version` on its memcached port.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

IMAGE=${RINGCACHE_IMAGE:-ringcache:dev}
BASE_IMAGE=${RINGCACHE_BASE_IMAGE:-ringcache-base:dev}
stage=target/image
rootfs=$stage/rootfs
context=$stage/context

log() { printf '==> %s\n' "$*"; }
die() { echo "build.sh: $*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

command -v docker >/dev/null 2>&1 || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker daemon does not answer"

# --- the binary ---
if [ -n "${RINGCACHE_BINARY:-}" ]; then
    binary=$RINGCACHE_BINARY
else
    log "building the release binary"
    cargo build --release --locked -p ringcache-server
    binary=target/release/ringcache
fi
[ -x "$binary" ] || die "$binary is not an executable"

# --- the base image's root ---
log "filling the base image's root from ldd $binary"
rm -rf "$rootfs" "$context"
mkdir -p "$rootfs"/{bin,etc,tmp,usr/local/bin} "$context"
chmod 1777 "$rootfs/tmp"

# ldd lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", the loader as
# "/lib64/ld-linux-x86-64.so.2 (0x...)", and linux-vdso.so.1 (in the kernel, no file).
# Each library goes to the path the binary asks for, with the content of the file the
# path resolves to (cp -L), so symlinks on the host become files in the image.
libs=$(ldd "$binary" | awk '
    $2 == "=>" && $3 ~ /^\// { print $3; next }
    $1 ~ /^\// { print $1 }')
[ -n "$libs" ] || die "ldd lists no libraries for $binary (a static binary needs no base; adapt this script)"
while IFS= read -r lib; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
    echo "    $lib"
done <<<"$libs"

cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
ringcache:x:10001:10001:ringcache:/tmp:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
PASSWD
cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
ringcache:x:10001:
nogroup:x:65534:
GROUP
# glibc's default without this file is "dns [!UNAVAIL=return] files"; the container's
# own /etc/hosts (written by Docker and the kubelet) should answer first.
echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"

# A static busybox from Debian's busybox-static, unpacked (not installed on this
# machine). The .deb is kept in target/image/ and reused.
busybox_deb=$(find "$stage" -maxdepth 1 -name 'busybox-static_*.deb' -print -quit 2>/dev/null || true)
if [ -z "$busybox_deb" ]; then
    log "fetching Debian's busybox-static"
    (cd "$stage" && apt-get download busybox-static 2>/dev/null) \
        || { as_root apt-get update -qq && (cd "$stage" && apt-get download busybox-static); } \
        || die "could not download busybox-static"
    busybox_deb=$(find "$stage" -maxdepth 1 -name 'busybox-static_*.deb' -print -quit)
fi
unpacked=$stage/busybox-static
rm -rf "$unpacked"
dpkg-deb -x "$busybox_deb" "$unpacked"
cp "$unpacked/bin/busybox" "$rootfs/bin/busybox"
for applet in sh awk cat cut env grep hostname id ip kill ls nc nslookup ps sleep wget; do
    ln -s busybox "$rootfs/bin/$applet"
done

log "importing $BASE_IMAGE"
tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -c . \
    | docker import \
        --change 'ENV PATH=/usr/local/bin:/bin' \
        --change 'WORKDIR /tmp' \
        --change 'LABEL io.ringcache.built-by=deploy/image/build.sh' \
        --message 'ringcache base: ldd libraries, loader, busybox-static, passwd' \
        - "$BASE_IMAGE" >/dev/null

# --- the ringcache image ---
log "building $IMAGE"
strip --strip-debug -o "$context/ringcache" "$binary" 2>/dev/null \
    || objcopy --strip-debug "$binary" "$context/ringcache" \
    || cp "$binary" "$context/ringcache"
chmod 0755 "$context/ringcache"
version=$("$binary" --version | awk '{print $2}')
docker build --quiet \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --label "org.opencontainers.image.title=ringcache" \
    --label "org.opencontainers.image.version=$version" \
    -f deploy/image/Dockerfile -t "$IMAGE" "$context" >/dev/null

# --- checks ---
log "checking $IMAGE"
out=$(docker run --rm "$IMAGE" --version)
echo "    $out"
[ "$out" = "$("$binary" --version)" ] || die "the image says '$out', the binary '$("$binary" --version)'"
uid=$(docker run --rm --entrypoint id "$IMAGE" -u)
[ "$uid" = 10001 ] || die "the image runs as uid $uid, not 10001"

# Started as the compose file starts a node: on 0.0.0.0, advertising the address its
# host name resolves to. It must answer `version` on its memcached port.
name="ringcache-image-check-$$"
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT
docker run -d --name "$name" --entrypoint /bin/sh "$IMAGE" -c \
    'ip=$(hostname -i | cut -d" " -f1) && exec ringcache -l 0.0.0.0 -m 16 -t 1 --advertise-addr "$ip:11211" --gossip-addr "$ip:12211"' \
    >/dev/null
reply=""
for _ in $(seq 1 50); do
    reply=$(docker exec "$name" sh -c 'printf "version\r\n" | nc -w 1 127.0.0.1 11211' 2>/dev/null || true)
    case $reply in VERSION*) break ;; esac
    sleep 0.2
done
case $reply in
    VERSION*) echo "    a node in the image answered: ${reply%$'\r'}" ;;
    *) docker logs "$name" >&2 || true; die "a node in the image did not answer version on 11211" ;;
esac
docker rm -f "$name" >/dev/null

# The images this script built before and that lost their tag to this run (ours
# only: the label is set on the base and inherited).
docker image prune -f --filter label=io.ringcache.built-by=deploy/image/build.sh >/dev/null

size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
log "built $IMAGE ($((size / 1024 / 1024)) MiB)"
