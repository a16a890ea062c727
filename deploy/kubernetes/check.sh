#!/usr/bin/env bash
# Checks the Kubernetes manifests as CI does: every overlay renders with kustomize (kubectl's
# built-in one), validates strictly against the Kubernetes schemas (kubernetes-validate), passes
# yamllint, inlines no Secret, and carries a config.toml that `servicekonto config check` accepts.
#
#   deploy/kubernetes/check.sh SERVICEKONTO_BINARY [PYTHON_VENV_BIN]
set -euo pipefail
binary=$(realpath "${1:?usage: check.sh SERVICEKONTO_BINARY [VENV_BIN]}")
venv=${2:+$(realpath "$2")}
cd "$(dirname "$0")"
tool() { if [ -n "$venv" ]; then echo "$venv/$1"; else echo "$1"; fi; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$(tool yamllint)" -s -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable}}' .
for overlay in overlays/*/; do
    name=$(basename "$overlay")
    rendered="$work/$name.yaml"
    kubectl kustomize "$overlay" > "$rendered"
    # Fails on any error; ServiceMonitor (a CRD of the Prometheus Operator, no schema ships
    # with Kubernetes) is only warned about.
    "$(tool kubernetes-validate)" --strict --quiet "$rendered"
    if grep -q '^kind: Secret$' "$rendered"; then
        echo "$name: a Secret is inlined; secrets are referenced, never committed" >&2
        exit 1
    fi
    for kind in Deployment PodDisruptionBudget Service Ingress NetworkPolicy ServiceMonitor Job; do
        grep -q "^kind: $kind$" "$rendered" || { echo "$name: no $kind" >&2; exit 1; }
    done
    # The node's configuration as the ConfigMap carries it, checked by the server itself
    # (with the secrets' files standing in).
    "$(tool python3)" - "$rendered" "$work/$name.toml" <<'PY'
import sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc and doc.get("kind") == "ConfigMap":
        open(sys.argv[2], "w").write(doc["data"]["config.toml"])
PY
    printf 'postgres://servicekonto@db/servicekonto' > "$work/database-url"
    (cd "$work" && SERVICEKONTO_DATABASE__URL_FILE="$work/database-url" \
        "$binary" --config "$work/$name.toml" config check >/dev/null) \
        || { echo "$name: config.toml is not accepted" >&2; exit 1; }
    echo "kubernetes: $name renders, validates and configures"
done
