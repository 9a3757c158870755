#!/usr/bin/env bash
# One idempotent setup for a fresh Debian 12 machine, run as root:
#   - Debian packages (libvirt daemon, QEMU, busybox, iproute2, sshd, headers to build libvirt-python)
#   - the Python virtual environment (.venv) with pinned requirements
#   - the guest kernel (extracted from Debian's kernel package, never installed into /boot) and the
#     guest initramfs built by the project (tests/lab/guest/)
# Everything it makes lives under the repository (.venv, .lab-cache); a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
cache="$top/.lab-cache"
venv="$top/.venv"

log() { printf '[setup %(%H:%M:%S)T] %s\n' -1 "$*"; }

if [ "$(id -u)" != 0 ]; then
    echo "setup: must run as root (it installs Debian packages and the lab needs namespaces)" >&2
    exit 2
fi

start=$(date +%s)
pkgs=(libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils
      busybox-static iproute2 iputils-ping iputils-arping libvirt-dev pkg-config openssh-server
      openssh-client shellcheck gcc libc6-dev python3-venv xz-utils cpio util-linux procps git
      swtpm swtpm-tools openssl)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    # Never let a package start a daemon in the root namespace: the lab starts its own, per host.
    prc_made=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; prc_made=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$prc_made" = 1 ] && rm -f /usr/sbin/policy-rc.d
else
    log "Debian packages present"
fi

# Python: the venv uses the machine's python3 (3.11 on Debian 12 and on this machine kind).
py=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$top/requirements.txt" "$venv/.requirements.txt" \
        || ! cmp -s "$top/requirements-test.txt" "$venv/.requirements-test.txt"; then
    log "building the virtual environment in $venv"
    "$py" -m venv "$venv"
    # (pip's notes about this machine's extra package locations are filtered out; its errors are not)
    { "$venv/bin/pip" install -q --upgrade pip 2>&1; } | { grep -v "^WARNING: Location" || true; }
    { "$venv/bin/pip" install -q -r "$top/requirements.txt" -r "$top/requirements-test.txt" 2>&1; } \
        | { grep -v "^WARNING: Location" || true; }
    cp "$top/requirements.txt" "$venv/.requirements.txt"
    cp "$top/requirements-test.txt" "$venv/.requirements-test.txt"
else
    log "virtual environment up to date"
fi

# The guest: kernel + initramfs, rebuilt when the guest sources change.
"$venv/bin/python" "$here/guest/build.py" --cache "$cache"

log "setup done in $(( $(date +%s) - start )) s"
