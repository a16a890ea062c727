#!/usr/bin/env bash
# Stand-ins for the compose file's third-party images, built with buildah from this machine's
# Debian packages, for machines that reach no container registry (CI's). Each takes what
# compose.yaml uses of the image it replaces, and nothing more:
#
#   localhost/compose-nginx      nginx:1.27-alpine: envsubst of /etc/nginx/templates/*.template
#                                (only NGINX_ENVSUBST_FILTER's variables) into conf.d, then nginx
#   localhost/compose-postgres   postgres:16: a first start makes the cluster with POSTGRES_USER,
#                                POSTGRES_PASSWORD_FILE and POSTGRES_DB; pg_isready; uid 999
#                                (Debian's PostgreSQL 15, the version CI's machine has)
#   localhost/compose-redis      redis:7: redis-server and redis-cli, /data, uid 999
#   localhost/compose-mail       axllent/mailpit: MailDev (npm) on the same ports, SMTP 1025 and
#                                the web view on 8025 (its JSON API is /email, Mailpit's /api/v1)
#
#   deploy/compose/local-images.sh        # then: NGINX_IMAGE=localhost/compose-nginx ... ./up.sh
#
# Needs nginx, gettext-base (envsubst), postgresql, redis-server, nodejs/npm and buildah.
set -euo pipefail
cd "$(dirname "$0")"
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs} BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
# Docker format: the OCI image format has no health check.
export BUILDAH_FORMAT=docker
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Copies files (and directories) into a root file system at their own paths; a file that is a
# symbolic link (Debian's redis-server is one) comes as what it points to.
copy_in() {
    local root=$1 path
    shift
    for path in "$@"; do
        mkdir -p "$root$(dirname "$path")"
        if [ -d "$path" ]; then cp -a "$path" "$root$(dirname "$path")/"; else cp -L "$path" "$root$path"; fi
    done
}

# Adds every shared library that an executable or library in the root file system loads, and
# the loader, from this machine.
libraries() {
    local root=$1 path lib
    find "$root" -type f \( -perm -u+x -o -name '*.so*' \) | while read -r path; do
        # Not every executable file is dynamically linked (scripts, static binaries).
        ldd "$path" 2>/dev/null | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }' || true
    done | sort -u | while read -r lib; do
        [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    done
}

bundle() {
    copy_in "$@"
    libraries "$1"
}

# A root file system with /bin/sh, the users and /tmp.
base() {
    local root=$1
    mkdir -p "$root"
    chmod 0755 "$root"
    bundle "$root" /bin/dash /usr/bin/env
    ln -s dash "$root/bin/sh"
    mkdir -p "$root/etc"
    printf 'root:x:0:0:root:/root:/bin/sh\n%s\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' "$2" > "$root/etc/passwd"
    printf 'root:x:0:\n%s\nnogroup:x:65534:\n' "$3" > "$root/etc/group"
    install -d -m 1777 "$root/tmp"
}

# commit ROOT TAG OWNER buildah-config-arguments...: OWNER (uid:gid:path, or -) is a directory
# that belongs to the image's user (buildah copy makes everything root's).
commit() {
    local root=$1 tag=$2 owner=$3 container
    shift 3
    container=$(buildah from scratch)
    buildah copy --quiet "$container" "$root/" / >/dev/null
    if [ "$owner" != - ]; then
        # Copied as the content of a folder around it, so that the directory itself is the user's.
        local path=${owner##*:} around
        around=$(mktemp -d -p "$work")
        cp -a "$root$path" "$around/"
        buildah copy --quiet --chown "${owner%:*}" "$container" "$around" "$(dirname "$path")" >/dev/null
    fi
    buildah config --env PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin "$@" \
        --label org.opencontainers.image.description="stand-in built by deploy/compose/local-images.sh" \
        "$container"
    buildah commit --quiet --rm "$container" "$tag" >/dev/null
    echo "$tag"
}

# nginx: Debian's build with the official image's template step.
root=$work/nginx
base "$root" 'nginx:x:101:101:nginx:/nonexistent:/bin/false' 'nginx:x:101:'
bundle "$root" /usr/sbin/nginx /usr/bin/envsubst /etc/nginx/mime.types
mkdir -p "$root/etc/nginx/conf.d" "$root/etc/nginx/templates" "$root/var/log/nginx" "$root/run"
install -d -m 0755 "$root/var/lib/nginx"
cat > "$root/etc/nginx/nginx.conf" <<'EOF'
user nginx;
worker_processes auto;
pid /run/nginx.pid;
error_log stderr notice;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    include /etc/nginx/conf.d/*.conf;
}
EOF
cat > "$root/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# The official image's 20-envsubst-on-templates.sh, reduced: only the variables whose names
# match NGINX_ENVSUBST_FILTER are replaced; nginx's own $variables stay.
set -eu
filter=${NGINX_ENVSUBST_FILTER:-.}
names=$(env | while IFS= read -r line; do
    name=${line%%=*}
    if expr "$name" : "${filter#^}" >/dev/null; then printf ' ${%s}' "$name"; fi
done)
for template in /etc/nginx/templates/*.template; do
    [ -e "$template" ] || continue
    output=${template##*/}
    envsubst "$names" < "$template" > "/etc/nginx/conf.d/${output%.template}"
done
exec "$@"
EOF
chmod 0755 "$root/docker-entrypoint.sh"
bundle "$root" /usr/bin/expr
commit "$root" localhost/compose-nginx - \
    --entrypoint '["/docker-entrypoint.sh"]' --cmd 'nginx -g "daemon off;"' --port 8443 \
    --stop-signal SIGQUIT

# PostgreSQL: Debian's, with the official image's first-start initialisation.
root=$work/postgres
pg=$(ls -d /usr/lib/postgresql/* | sort -V | tail -n1)
base "$root" 'postgres:x:999:999:postgres:/var/lib/postgresql:/bin/sh' 'postgres:x:999:'
copy_in "$root" "$pg/bin" "$pg/lib" "/usr/share/postgresql/${pg##*/}" /usr/share/zoneinfo
# No JIT (jit=off below): its library alone would bring LLVM's 100 MB.
rm -rf "$root$pg/lib/llvmjit"* "$root$pg/lib/bitcode"
libraries "$root"
install -d -m 0700 "$root/var/lib/postgresql/data"
install -d -m 1777 "$root/var/run/postgresql"
cat > "$root/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# The official image's first start, reduced: a cluster owned by POSTGRES_USER with the password
# from POSTGRES_PASSWORD_FILE, password logins from the network, and the database POSTGRES_DB.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$POSTGRES_PASSWORD_FILE" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >/dev/null
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    database=${POSTGRES_DB:-$POSTGRES_USER}
    if [ "$database" != postgres ]; then
        echo "CREATE DATABASE \"$database\" OWNER \"$POSTGRES_USER\"" \
            | postgres --single -D "$PGDATA" -c jit=off postgres >/dev/null
    fi
fi
exec "$@"
EOF
chmod 0755 "$root/docker-entrypoint.sh"
commit "$root" localhost/compose-postgres 999:999:/var/lib/postgresql \
    --user 999:999 --env "PATH=$pg/bin:/usr/bin:/bin" --env PGDATA=/var/lib/postgresql/data \
    --volume /var/lib/postgresql/data --port 5432 \
    --entrypoint '["/docker-entrypoint.sh"]' --cmd "postgres -c listen_addresses=* -c jit=off" \
    --stop-signal SIGINT

# Redis: Debian's.
root=$work/redis
base "$root" 'redis:x:999:999:redis:/data:/bin/false' 'redis:x:999:'
bundle "$root" /usr/bin/redis-server /usr/bin/redis-cli
install -d -m 0755 "$root/data"
cat > "$root/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# The official image builds redis-server with protected mode off (it listens on the container's
# network, reachable only from there); Debian's has it on, which refuses every other container.
if [ "${1:-}" = redis-server ]; then
    shift
    set -- redis-server --protected-mode no "$@"
fi
exec "$@"
EOF
chmod 0755 "$root/docker-entrypoint.sh"
commit "$root" localhost/compose-redis 999:999:/data --user 999:999 --workingdir /data --volume /data --port 6379 \
    --entrypoint '["/docker-entrypoint.sh"]' --cmd redis-server

# The mail sink: MailDev from npm on Node.js from Debian.
root=$work/mail
base "$root" 'maildev:x:1000:1000:maildev:/opt/maildev:/bin/false' 'maildev:x:1000:'
mkdir -p "$work/maildev"
(cd "$work/maildev" && npm install --silent --no-audit --no-fund --omit=dev --prefix . maildev@3.0.0 >/dev/null)
mkdir -p "$root/opt/maildev"
cp -a "$work/maildev/node_modules" "$root/opt/maildev/"
bundle "$root" "$(readlink -f "$(command -v node)")"
[ -e "$root/usr/bin/node" ] || ln -s "$(readlink -f "$(command -v node)")" "$root/usr/bin/node"
commit "$root" localhost/compose-mail - --user 1000:1000 --port 1025 --port 8025 \
    --entrypoint '["node", "/opt/maildev/node_modules/maildev/dist/bin/maildev.js", "--ip", "0.0.0.0", "--smtp", "1025", "--web", "8025"]'
