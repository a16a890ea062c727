#!/usr/bin/env bash
# Starts the image as an operator would (read-only root file system, its own volumes, non-root)
# and checks it: /readyz answers 200, discovery names the configured issuer, the image's health
# check passes, the process runs as uid 10001, and SIGTERM stops it cleanly (exit 0).
#
#   deploy/container/smoke-test.sh IMAGE
#
# PODMAN_RUN_FLAGS adds flags for the machine (CI: `--runtime runc`, see .ci/run).
set -euo pipefail
image=${1:?usage: smoke-test.sh IMAGE}
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
name="servicekonto-smoke-$port"
base="http://127.0.0.1:$port"
cleanup() { podman rm -f -v "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
# shellcheck disable=SC2086 # the flags are words
podman run -d --name "$name" --read-only --network host ${PODMAN_RUN_FLAGS:-} \
    -e "SERVICEKONTO_HTTP__BIND=127.0.0.1:$port" -e "SERVICEKONTO_ENVIRONMENTS__PUBLIC_URL=$base" \
    "$image" >/dev/null 2>&1
for _ in $(seq 1 120); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ] && break
    sleep 0.5
done
status=$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")
[ "$status" = 200 ] || { podman logs "$name" 2>&1 | tail -20; echo "readyz: $status" >&2; exit 1; }
curl -sf "$base/test/.well-known/openid-configuration" | grep -q "\"issuer\":\"$base/test\"" \
    || { echo "discovery does not name $base/test" >&2; exit 1; }
podman exec "$name" /usr/local/bin/servicekonto healthcheck >/dev/null 2>&1 || { echo "health check failed" >&2; exit 1; }
pid=$(podman inspect --format '{{.State.Pid}}' "$name")
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
[ "$uid" = 10001 ] || { echo "runs as uid $uid, not 10001" >&2; exit 1; }
podman stop -t 30 "$name" >/dev/null 2>&1
code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || { podman logs "$name" 2>&1 | tail -20; echo "exit code $code after SIGTERM" >&2; exit 1; }
echo "container: $image ready on a read-only root as uid 10001, healthy, stopped cleanly"
