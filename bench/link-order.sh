#!/usr/bin/env bash
# Writes crates/server/link-order.txt: the functions our server runs from its start until it has
# answered its first request, in the order valgrind's callgrind first meets them. The linker
# (LLD, rustc's default on x86_64 Linux) places them at the start of the code (`build.rs` of the
# server and the bench), so the code a started node has touched sits in a few megabytes instead
# of being spread over the whole binary: Linux maps file pages in whole large folios, and every
# folio a start touches stays resident (docs/performance.md, "start code laid out together").
#
# Symbol names carry a hash of the crate's build (profile, features), and the bench's binary
# unifies other features than the shipped `servicekonto` built alone, so both dist builds are
# profiled and their lists joined. Names that no longer exist after a dependency update are
# skipped by the linker: the order is then only less complete; run this again (`just link-order`).
#
# Needs valgrind (Debian's package) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
out=crates/server/link-order.txt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Starts `binary` (with `env` before it) under callgrind, waits for its first answer, stops it and
# prints the mangled names of the functions it ran in `binary`'s own code.
profile_start() {
    local binary=$1 port
    shift
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local dir="$work/$port"
    mkdir -p "$dir"
    cat > "$dir/config.toml" <<EOF
[http]
bind = "127.0.0.1:$port"
[environments.production]
issuer = "http://127.0.0.1:$port"
[environments.test]
issuer = "http://127.0.0.1:$port/test"
[database]
url = "sqlite://$dir/servicekonto.db?mode=rwc"
[keys]
kek_path = "$dir/kek"
[log]
filter = "warn"
[mail]
outbox_dir = "$dir/outbox"
EOF
    env "$@" SERVICEKONTO_CONFIG="$dir/config.toml" valgrind --tool=callgrind --demangle=no \
        --callgrind-out-file="$dir/callgrind.out" "$binary" serve > "$dir/valgrind.log" 2>&1 &
    local pid=$!
    for _ in $(seq 600); do
        curl -sf "http://127.0.0.1:$port/healthz" > /dev/null && break
        sleep 0.5
    done
    curl -sf "http://127.0.0.1:$port/healthz" > /dev/null || { cat "$dir/valgrind.log" >&2; kill "$pid"; exit 1; }
    kill -TERM "$pid"
    wait "$pid" || true
    python3 - "$dir/callgrind.out" "$(basename "$binary")" <<'EOF'
import re, sys

# callgrind names objects (ob=, cob=) and functions (fn=, cfn=) once as "(id) name", later as "(id)".
names = {"ob": {}, "fn": {}}
current_object, seen = None, set()
entry = re.compile(r"(c?)(ob|fn)=\((\d+)\)(?: (.*))?$")
for line in open(sys.argv[1]):
    match = entry.match(line.rstrip("\n"))
    if not match:
        continue
    called, kind, number, name = match.groups()
    if name:
        names[kind][number] = name
    if called:
        continue
    if kind == "ob":
        current_object = names["ob"][number]
    elif current_object and current_object.endswith("/" + sys.argv[2]):
        # "'2" marks a recursive call's cost, not another function.
        function = names["fn"][number].split("'")[0]
        if function not in seen:
            seen.add(function)
            print(function)
EOF
}

cargo build --profile dist --locked -p bench --bin side-by-side
profile_start target/dist/side-by-side BENCH_ROLE=servicekonto > "$work/bench.txt"
cargo build --profile dist --locked -p server --bin servicekonto
profile_start target/dist/servicekonto > "$work/servicekonto.txt"

{
    echo "# The functions the server runs until its first answer, placed first by the linker."
    echo "# Written by bench/link-order.sh ($(git rev-parse --short HEAD)); do not edit."
    awk '!seen[$0]++' "$work/bench.txt" "$work/servicekonto.txt"
} > "$out"
echo "$(grep -vc '^#' "$out") functions in $out"
