#!/usr/bin/env bash
# Checks the systemd unit as CI does: `systemd-analyze verify` (with ExecStart pointing at the
# given binary) and the hardening score of `systemd-analyze security`, which must stay at or
# below 2.0 ("OK"; 0 is the best, 10 the worst).
#
#   deploy/systemd/check.sh SERVICEKONTO_BINARY
set -euo pipefail
binary=$(realpath "${1:?usage: check.sh SERVICEKONTO_BINARY}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s#/usr/local/bin/servicekonto#$binary#g" "$(dirname "$0")/servicekonto.service" > "$work/servicekonto.service"
systemd-analyze verify "$work/servicekonto.service"
score=$(systemd-analyze security --offline=yes "$work/servicekonto.service" 2>&1 \
    | sed -n 's/.*Overall exposure level for servicekonto.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || { echo "systemd-analyze security gave no score" >&2; exit 1; }
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || { echo "exposure $score is above 2.0" >&2; exit 1; }
echo "systemd: unit verifies; exposure level $score"
