#!/usr/bin/env bash
# Installs the Debian packages Affidavit's tests and tools need, only those missing,
# so a warm machine pays nothing and a fresh one needs no manual step.
# With --runtime: only what the service itself needs to run (`make run`).
set -euo pipefail
packages=(python3-venv swtpm swtpm-tools tpm2-tools libtss2-dev softhsm2 postgresql libefivar1 haproxy)
if [ "${1:-}" = "--runtime" ]; then
    packages=(python3-venv)
fi
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in "${packages[@]}"; do
    have "$pkg" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing Debian packages: ${need[*]} (run as root, or install them)" >&2
        exit 1
    fi
    echo "installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
