#!/usr/bin/env sh
# One command for the compose deployment: a local CA and certificate for localhost, the secrets
# (key-encryption key, database password) if they do not exist yet, then the services in order.
# Uses COMPOSE if set, else `docker compose`, or `podman compose` / `podman-compose` where Docker
# is not installed.
set -eu
cd "$(dirname "$0")"
../tls/local-ca.sh tls localhost 127.0.0.1
# The secrets folder is the owner's alone; its files are readable so that the containers'
# users (servicekonto 10001, postgres 999) can read what compose mounts into /run/secrets.
mkdir -p secrets
chmod 700 secrets
[ -s secrets/kek ] || head -c 32 /dev/urandom | base64 > secrets/kek
if [ ! -s secrets/postgres-password ]; then
    head -c 24 /dev/urandom | base64 | tr -d '/+=' > secrets/postgres-password
fi
[ -s secrets/database-url ] || printf 'postgres://servicekonto:%s@postgres:5432/servicekonto' \
    "$(cat secrets/postgres-password)" > secrets/database-url
if [ -n "${COMPOSE:-}" ]; then
    compose=$COMPOSE
elif docker compose version >/dev/null 2>&1; then
    compose="docker compose"
elif podman compose version >/dev/null 2>&1; then
    compose="podman compose"
else
    compose="podman-compose"
fi
# In stages rather than one `up`: the migration has finished before any node starts (nodes run
# with --no-migrate), and podman 4.3's `--requires`, which podman-compose derives from
# depends_on, cannot start a service whose dependency has dependencies of its own.
$compose up -d --no-deps postgres redis mailpit
# Waits for PostgreSQL itself (dependencies.startup_wait_seconds).
$compose run --rm --no-deps migrate
$compose up -d --no-deps node-a node-b
$compose up -d --no-deps nginx
echo "servicekonto: https://localhost:8443 (trust $(pwd)/tls/ca.pem), mails: http://localhost:8025"
echo "demo client: client_id=demo-client, issuer https://localhost:8443/test"
