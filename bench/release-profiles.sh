#!/usr/bin/env bash
# Release profiles compared: a cold build of the server (wall time, CPU time, peak memory of the
# build) and its speed in the side-by-side bench against node oidc-provider in the same run
# (SSO code flow, refresh, client_credentials). Each profile builds in its own target folder, so
# every build is cold; the crates are downloaded once before. The builds use a snapshot of the
# committed HEAD (a git worktree), so edits made meanwhile cannot change what is measured. Run on
# a quiet machine: `just bench-profiles` (about 30 minutes on 2 cores). Output:
# target/bench/profiles.md.
set -euo pipefail
cd "$(dirname "$0")/.."
repository=$(pwd)
out=$repository/target/bench/profiles
mkdir -p "$out"
snapshot=$(mktemp -d)
git worktree add --detach "$snapshot/tree" HEAD >/dev/null
trap 'git -C "$repository" worktree remove --force "$snapshot/tree"; rm -rf "$snapshot"' EXIT
cd "$snapshot/tree"
cargo fetch --locked >/dev/null

# name | cargo profile | extra environment
profiles=(
    "release, 16 codegen units (cargo's default)|release|CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16"
    "release, 4 codegen units (ours)|release|"
    "dist: fat LTO, 1 codegen unit|dist|"
)
table="$repository/target/bench/profiles.md"
{
    echo "| profile | cold build wall | build CPU (user+sys) | build peak RSS | binary | SSO flows/s ours/peer | SSO CPU ms/flow | refresh ours/peer | refresh CPU ms | client_credentials ours/peer |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} > "$table"
for entry in "${profiles[@]}"; do
    IFS='|' read -r name profile extra <<< "$entry"
    slug=$(echo "$name" | tr -c 'a-z0-9' '-' | cut -c1-24)
    target="$repository/target/profiles/$slug"
    rm -rf "$target"
    echo "== $name: cold build into $target" >&2
    env $extra CARGO_TARGET_DIR="$target" /usr/bin/time -f '%e %U %S %M' -o "$out/$slug.time" \
        cargo build --locked --profile "$profile" -p bench --bin side-by-side >/dev/null 2>"$out/$slug.build.log"
    read -r wall user sys rss < "$out/$slug.time"
    binary="$target/$profile/side-by-side"
    size=$(stat -c %s "$binary")
    echo "== $name: bench" >&2
    "$binary" --only "SSO" --only "refresh" --only "client_credentials" --out "$out/$slug" >/dev/null 2>&1
    json="$out/$slug/side-by-side.json"
    python3 - "$json" "$name" "$wall" "$user" "$sys" "$rss" "$size" >> "$table" <<'PY'
import json, sys
path, name, wall, user, sys_, rss, size = sys.argv[1:]
report = json.load(open(path))
by = {s["scenario"]: s for s in report["scenarios"]}
def get(prefix):
    return next(v for k, v in by.items() if k.startswith(prefix))
def rate(s):
    ours = s["servicekonto"]["requests_per_second"]
    peer = (s.get("oidc_provider") or {}).get("requests_per_second")
    ratio = s.get("throughput_ratio")
    return f"{ours:.0f} / {peer:.0f} ({ratio:.2f}×)" if peer and ratio else f"{ours:.0f}"
def cpu(s):
    return f'{s["servicekonto"]["server_cpu_ms_per_request"]:.3f}'
sso, refresh, cc = get("SSO"), get("refresh"), get("client_credentials")
wall = float(wall)
print(f"| {name} | {int(wall // 60)}m {int(wall % 60):02d}s | {(float(user) + float(sys_)) / 60:.1f} min "
      f"| {int(rss) / 1048576:.1f} GiB | {int(size) / 1e6:.1f} MB | {rate(sso)} | {cpu(sso)} "
      f"| {rate(refresh)} | {cpu(refresh)} | {rate(cc)} |")
PY
done
cat "$table"
