#!/usr/bin/env bash
# One idempotent setup for a fresh Debian 12 or 13 machine, run as root:
#   - Debian packages (libvirt daemon, QEMU, busybox, iproute2, sshd, headers to build libvirt-python);
#     QEMU and libvirt at least 10.0 / 11.3: on Debian 12 from bookworm-backports (only those packages;
#     Debian 12's own QEMU 7.2 corrupts guests migrated under TCG, see docs/docsite/rst/guide_lab.rst),
#     on Debian 13 its own packages
#   - VMMLAB_STOCK=1 keeps Debian 12's own QEMU 7.2 / libvirt 9.0 (the compatibility pass only)
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
export DEBIAN_FRONTEND=noninteractive
codename=$(sed -n "s/^VERSION_CODENAME=//p" /etc/os-release)
pkgs=(busybox-static iproute2 iputils-ping iputils-arping pkg-config openssh-server
      openssh-client shellcheck gcc libc6-dev python3-venv xz-utils cpio util-linux procps git
      swtpm swtpm-tools openssl tcpdump
      chromium)  # (headless: the reports' HTML timelines rendered as a person sees them, tests/lab/browser.py)
# QEMU and libvirt: these exact packages, all from one release (a mix of 9.0 and 11.3 libvirt parts
# does not start).
virt=(qemu-system-x86 qemu-system-common qemu-system-data qemu-utils seabios
      libvirt-daemon-system libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev
      libvirt0 libvirt-common libvirt-daemon-common libvirt-daemon-lock libvirt-daemon-log
      libvirt-daemon-plugin-lockd libvirt-daemon-config-network libvirt-daemon-config-nwfilter
      libvirt-daemon-driver-network libvirt-daemon-driver-nwfilter libvirt-daemon-driver-storage
      libvirt-daemon-driver-secret libvirt-daemon-driver-nodedev libvirt-daemon-driver-interface
      libvirt-daemon-system-systemd)
# (libvirt split these out after 9.0: Debian 12 has no such packages)
bpo_only=(libvirt-common libvirt-daemon-common libvirt-daemon-lock libvirt-daemon-log libvirt-daemon-plugin-lockd
          libvirt-daemon-driver-network libvirt-daemon-driver-nwfilter libvirt-daemon-driver-storage
          libvirt-daemon-driver-secret libvirt-daemon-driver-nodedev libvirt-daemon-driver-interface)
suite=""
if [ "$codename" = bookworm ] && [ "${VMMLAB_STOCK:-0}" != 1 ]; then
    suite=bookworm-backports
elif [ "$codename" != bookworm ] && [ "$codename" != trixie ]; then
    log "warning: Debian '$codename' is not one this setup knows (bookworm, trixie); trying its own packages"
fi

installed_version() {
    { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null || true; } | awk '/install ok installed/ {print $4}'
}

missing=()
for p in "${pkgs[@]}"; do
    [ -n "$(installed_version "$p")" ] || missing+=("$p")
done
virt_want=()
if [ -n "$suite" ]; then
    # Backports must be known to apt; the entry names the suite only, on Debian's own mirror.
    if ! grep -rqsE --include='*.list' --include='*.sources' '^[^#]*bookworm-backports' \
            /etc/apt/sources.list /etc/apt/sources.list.d/; then
        log "adding Debian's bookworm-backports suite to apt's sources (used only for QEMU and libvirt)"
        cat > /etc/apt/sources.list.d/vmmigration-lab-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    for p in "${virt[@]}"; do
        case "$(installed_version "$p")" in *bpo*) ;; *) virt_want+=("$p/$suite") ;; esac
    done
else
    for p in "${virt[@]}"; do
        v=$(installed_version "$p")
        if [ "$codename" = bookworm ] && [[ " ${bpo_only[*]} " == *" $p "* ]]; then
            # the compatibility pass: parts that only the newer libvirt has go
            [ -z "$v" ] || virt_want+=("$p-")
        elif [ -z "$v" ]; then
            virt_want+=("$p")
        elif [ "$codename" = bookworm ] && [[ "$v" == *bpo* ]]; then
            virt_want+=("$p/bookworm")     # the compatibility pass: back to Debian 12's own
        fi
    done
fi
if [ ${#missing[@]} -gt 0 ] || [ ${#virt_want[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]} ${virt_want[*]}"
    # Never let a package start a daemon in the root namespace: the lab starts its own, per host.
    prc_made=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; prc_made=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends --allow-downgrades "${missing[@]}" "${virt_want[@]}" >/dev/null
    [ "$prc_made" = 1 ] && rm -f /usr/sbin/policy-rc.d
else
    log "Debian packages present"
fi
qemu_v=$(qemu-system-x86_64 --version | sed -n 's/^QEMU emulator version \([0-9.]*\).*/\1/p')
libvirt_v=$(libvirtd --version | awk '{print $NF}')
log "QEMU $qemu_v, libvirt $libvirt_v"

# Python: the venv uses the machine's python3 (3.11 on Debian 12 and on this machine kind).
py=${PYTHON:-python3}
# libvirt-python is built against the installed libvirt headers: a new libvirt rebuilds the venv.
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$top/requirements.txt" "$venv/.requirements.txt" \
        || ! cmp -s "$top/requirements-test.txt" "$venv/.requirements-test.txt" \
        || [ "$(cat "$venv/.libvirt-version" 2>/dev/null)" != "$libvirt_v" ]; then
    log "building the virtual environment in $venv"
    "$py" -m venv --clear "$venv"
    # (pip's notes about this machine's extra package locations are filtered out; its errors are not)
    { "$venv/bin/pip" install -q --upgrade pip 2>&1; } | { grep -v "^WARNING: Location" || true; }
    { "$venv/bin/pip" install -q -r "$top/requirements.txt" -r "$top/requirements-test.txt" 2>&1; } \
        | { grep -v "^WARNING: Location" || true; }
    # pip keeps the wheel it built from libvirt-python's sdist: build it again against these headers
    lvp=$(grep -E '^libvirt-python==' "$top/requirements.txt")
    { "$venv/bin/pip" install -q --no-cache-dir --force-reinstall --no-deps "$lvp" 2>&1; } \
        | { grep -v "^WARNING: Location" || true; }
    cp "$top/requirements.txt" "$venv/.requirements.txt"
    cp "$top/requirements-test.txt" "$venv/.requirements-test.txt"
    echo "$libvirt_v" > "$venv/.libvirt-version"
else
    log "virtual environment up to date"
fi

# The guest: kernel + initramfs, rebuilt when the guest sources change.
"$venv/bin/python" "$here/guest/build.py" --cache "$cache"

log "setup done in $(( $(date +%s) - start )) s"
