#!/usr/bin/env bash
# Checks the compose deployment as CI does, without pulling images: the file resolves
# (podman-compose config), every node's environment on top of the image's configuration file is
# a configuration `servicekonto config check` accepts (with throwaway secret files), nginx gets
# exactly the variables the template uses, and every secret is passed as a file.
#
#   deploy/compose/check.sh SERVICEKONTO_BINARY [PYTHON_VENV_BIN]
set -euo pipefail
binary=$(realpath "${1:?usage: check.sh SERVICEKONTO_BINARY [VENV_BIN]}")
venv=${2:+$(realpath "$2")}
cd "$(dirname "$0")"
tool() { if [ -n "$venv" ]; then echo "$venv/$1"; else echo "$1"; fi; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# compose resolves secret files relative to this folder: stand-ins in a copy.
cp compose.yaml "$work/"
mkdir -p "$work/secrets"
head -c 32 /dev/urandom | base64 > "$work/secrets/kek"
printf 'postgres://servicekonto:pw@postgres:5432/servicekonto' > "$work/secrets/database-url"
printf 'pw' > "$work/secrets/postgres-password"
(cd "$work" && "$(tool podman-compose)" -f compose.yaml config) > "$work/resolved.yaml"
"$(tool python3)" - "$work" "$binary" ../nginx/servicekonto.conf.template "$(realpath ../container/servicekonto.toml)" <<'PY'
import os, re, subprocess, sys, yaml
work, binary, template, image_config = sys.argv[1:5]
config = yaml.safe_load(open(f"{work}/resolved.yaml"))
services = config["services"]
for name in ["migrate", "node-a", "node-b", "nginx", "postgres", "redis", "mailpit"]:
    assert name in services, f"service {name} is missing"
for name in ["node-a", "node-b", "migrate"]:
    env = {k: str(v) for k, v in services[name]["environment"].items()}
    for key, value in env.items():
        assert not re.search(r"(PASSWORD|SECRET|KEK)$|DATABASE__URL$", key), f"{name}: {key} is a secret given inline"
        if value.startswith("/run/secrets/"):
            env[key] = f"{work}/secrets/{value.rsplit('/', 1)[1]}"
    # On top of the image's own configuration file, as in the container.
    result = subprocess.run([binary, "config", "check"],
                            env={"PATH": os.environ["PATH"], "SERVICEKONTO_CONFIG": image_config, **env},
                            capture_output=True, text=True, cwd=work)
    assert result.returncode == 0, f"{name}: servicekonto config check refuses it:\n{result.stderr}"
    assert "--no-migrate" in services[name]["command"] or name == "migrate", f"{name} must not migrate"
wanted = set(re.findall(r"\$\{(SK_[A-Z_]+)\}", open(template).read()))
given = {k for k in services["nginx"]["environment"] if k.startswith("SK_")}
assert wanted == given, f"nginx template variables {sorted(wanted)} vs compose {sorted(given)}"
print("compose: resolves; nodes configure; nginx variables match the template")
PY
