#!/usr/bin/env bash
# Builds servicekonto's container image with buildah from scratch, without pulling a base image:
# the host's release binary, the shared libraries it links (glibc, libgcc), CA certificates and
# a non-root user. The result has the layout of deploy/container/Containerfile (which builds in
# a Rust image and runs on distroless, for machines that reach the registries).
#
#   deploy/container/build-image.sh [--binary PATH] [--tag NAME] [--archive FILE]
#
# Defaults: target/dist/servicekonto (the dist profile, built if missing), servicekonto:<version>, no archive.
# Uses vfs storage and chroot isolation, so it runs unprivileged inside CI's container too.
set -euo pipefail
cd "$(dirname "$0")/../.."

binary=target/dist/servicekonto
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
tag="servicekonto:${version}"
archive=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        --archive) archive=$2; shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--tag NAME] [--archive FILE]" >&2; exit 2 ;;
    esac
done
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs} BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
# Docker format: the OCI image format has no health check.
export BUILDAH_FORMAT=docker

if [ ! -x "$binary" ]; then
    cargo build --profile dist --locked -p server --bin servicekonto
fi

rootfs=$(mktemp -d)
# mktemp makes it 0700; it becomes the image's /, which user 10001 must be able to enter.
chmod 0755 "$rootfs"
trap 'rm -rf "$rootfs"' EXIT
install -D -m 0755 "$binary" "$rootfs/usr/local/bin/servicekonto"
strip --strip-debug "$rootfs/usr/local/bin/servicekonto" 2>/dev/null || true
# Every shared library the binary loads, and the loader, at the paths it looks for them.
ldd "$binary" | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }' | while read -r lib; do
    install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
done
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
install -D -m 0644 deploy/config.example.toml "$rootfs/usr/share/servicekonto/config.example.toml"
install -D -m 0644 deploy/container/servicekonto.toml "$rootfs/etc/servicekonto/servicekonto.toml"
printf 'root:x:0:0:root:/root:/sbin/nologin\nservicekonto:x:10001:10001:servicekonto:/var/lib/servicekonto:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nservicekonto:x:10001:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
install -d -m 0750 "$rootfs/var/lib/servicekonto/data" "$rootfs/var/lib/servicekonto/keys"
install -d -m 1777 "$rootfs/tmp"

container=$(buildah from scratch)
trap 'rm -rf "$rootfs"; buildah rm "$container" >/dev/null 2>&1 || true' EXIT
buildah copy --quiet "$container" "$rootfs/" / >/dev/null
buildah copy --quiet --chown 10001:10001 "$container" "$rootfs/var/lib/servicekonto" /var/lib/servicekonto >/dev/null
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
buildah config \
    --user 10001:10001 \
    --workingdir /var/lib/servicekonto \
    --env SERVICEKONTO_CONFIG=/etc/servicekonto/servicekonto.toml \
    --volume /var/lib/servicekonto/data \
    --volume /var/lib/servicekonto/keys \
    --port 8080 \
    --healthcheck 'CMD ["/usr/local/bin/servicekonto", "healthcheck"]' \
    --healthcheck-interval 10s --healthcheck-timeout 5s --healthcheck-start-period 30s --healthcheck-retries 3 \
    --entrypoint '["/usr/local/bin/servicekonto"]' \
    --cmd serve \
    --label org.opencontainers.image.title=servicekonto \
    --label "org.opencontainers.image.description=OpenID Connect provider: one citizen account for all online services of a state's authorities" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label org.opencontainers.image.licenses=EUPL-1.2 \
    --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "$container"
buildah commit --quiet --rm "$container" "$tag" >/dev/null
trap 'rm -rf "$rootfs"' EXIT
if [ -n "$archive" ]; then
    buildah push --quiet "$tag" "docker-archive:$archive:$tag"
fi
size=$(buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | awk -v t="$tag" '$1 ~ t"$" { print $2, $3 }' | head -n1)
echo "built $tag${archive:+ (archive $archive)}: $size"
