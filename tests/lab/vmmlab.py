"""The vmmigration.libvirt lab: several libvirt/KVM "hypervisor hosts" on one machine.

Each host is a network namespace plus a persistent mount + UTS namespace with its own libvirtd
(listening on its lab address) and its own sshd, reached by Ansible over SSH as root with a lab key.
A switch namespace joins the hosts' bridges into one L2 segment; a controller namespace runs
ansible-playbook, a client namespace probes guests, a storage namespace serves NBD exports.

Addresses: 198.18.0.0/24 and 2001:db8:18::/64 (segment "lan", bridge br0 on every host),
198.18.1.0/24 (segment "net2", bridge br1 on every host but the last). No namespace has a route out
of the machine: ``up`` checks every routing table and refuses to go on otherwise.

Storage: (a) NBD network disks from the storage namespace (shared, libvirt knows it);
(b) one directory mounted at the same path on every host (shared, but libvirt cannot tell);
(c) a per-host local directory at the same path on every host (NOT shared: the trap).

The last host differs on purpose: no br1 bridge and a different storage pool layout.

Everything lives under VMMLAB_ROOT (default /var/tmp/vmmlab). ``down`` ends only processes the lab
started, by PID, unmounts, deletes the namespaces and the state, and is idempotent.

Usage: lab up [--hosts N] | down | status | inventory | ssh HOST [CMD...] | virsh HOST ARGS...
       | exec NS CMD... | playbook PLAYBOOK [ARGS...] | guest NAME [--host H ...] | guest-status NAME
"""
import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
ROOT = os.environ.get("VMMLAB_ROOT", "/var/tmp/vmmlab")
CACHE = os.environ.get("VMMLAB_CACHE", os.path.join(TOP, ".lab-cache"))
VENV_PY = os.path.join(TOP, ".venv", "bin", "python")
NS = "vmmlab-"

LAN4 = ipaddress.ip_network("198.18.0.0/24")
NET2_4 = ipaddress.ip_network("198.18.1.0/24")
ROUTED4 = ipaddress.ip_network("198.18.2.0/24")   # routed design: guests with /32s behind their hypervisor
ROUTED6 = ipaddress.ip_network("2001:db8:18:2::/64")  # ... and /128s
RTR_IP = "198.18.0.5"
LAN6 = ipaddress.ip_network("2001:db8:18::/64")
ALLOWED = [ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:db8::/32"),
           ipaddress.ip_network("fe80::/64"), ipaddress.ip_network("ff00::/8")]
CTL_IP, CLI_IP, STO_IP = "198.18.0.2", "198.18.0.3", "198.18.0.4"
STATUS_PORT = 7777
NBD_BASE_PORT = 10809

# Mount points seen inside every host (they exist, empty, in the root namespace too).
MNT_SHARED = os.path.join(ROOT, "mnt", "shared")
MNT_LOCAL = os.path.join(ROOT, "mnt", "local")
BIND_DIRS = ["/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt"]
BIND_FILES = ["/etc/hosts", "/etc/resolv.conf"]
SWTPM_LOCALCA, SWTPM_LOG = "/var/lib/swtpm-localca", "/var/log/swtpm"
ROOT_BASHRC = "/root/.bashrc"
REQUIRED_TOOLS = ["ip", "nsenter", "unshare", "taskset", "libvirtd", "virsh", "qemu-system-x86_64", "qemu-img",
                  "qemu-nbd", "/usr/sbin/sshd", "ssh", "ssh-keygen", "bridge"]


class LabError(Exception):
    pass


# QEMU before 9.0 loses guest stores during a TCG migration (its dirty-bitmap sync fast path clears
# dirty bits without flushing the TCG TLB; fixed by QEMU commit 03bfc2188f06 in 9.0): guests migrated
# under TCG come back corrupted, whatever drives the migration. The lab refuses such a QEMU unless a
# compatibility pass asks for it (VMMLAB_COMPAT=1 or 'lab up --compat'), whose guests may corrupt.
MIN_QEMU = (9, 0)


def _version(text):
    parts = []
    for piece in (text or "").split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def stack_versions():
    """{'qemu': '10.0.2', 'libvirt': '11.3.0'} of the machine's QEMU and libvirtd."""
    out = {}
    p = run(["qemu-system-x86_64", "--version"], check=False)
    first = (p.stdout or "").splitlines()[0] if p.stdout else ""
    out["qemu"] = first.split("version", 1)[1].split()[0] if "version" in first else "unknown"
    p = run(["libvirtd", "--version"], check=False)
    out["libvirt"] = (p.stdout or "unknown").split()[-1] if p.stdout else "unknown"
    return out


def check_stack(versions, compat=False):
    """Refuse a QEMU with the TCG migration defect unless this is a compatibility pass."""
    if _version(versions.get("qemu")) < MIN_QEMU and not compat:
        raise LabError("QEMU %s is older than %d.%d: its TCG migrations corrupt guests (QEMU commit "
                       "03bfc2188f06, fixed in 9.0), so the lab would show corruption that is not ours. "
                       "Run tests/lab/setup.sh (it installs QEMU 10 from bookworm-backports on Debian 12), "
                       "or bring the lab up with --compat (VMMLAB_COMPAT=1) for a compatibility pass "
                       "on idle guests" % ((versions.get("qemu"),) + MIN_QEMU))


def log(msg):
    print("[lab %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def run(cmd, check=True, capture=True, input=None, timeout=120, env=None):
    p = subprocess.run(cmd, capture_output=capture, text=True, input=input, timeout=timeout, check=False,
                       env=env)
    if check and p.returncode != 0:
        err = (p.stderr or "").strip()
        raise LabError("command failed (%d): %s\n%s" % (p.returncode, " ".join(cmd), err))
    return p


# ---------------------------------------------------------------------------------------------
# Topology
# ---------------------------------------------------------------------------------------------
def host_names(n):
    return ["h%d" % i for i in range(1, n + 1)]


def host_ip(name):
    return str(LAN4.network_address + 10 + int(name[1:]))


def host_ip6(name):
    return str(LAN6.network_address + 0x10 + int(name[1:]))


def host_net2_ip(name):
    return str(NET2_4.network_address + 10 + int(name[1:]))


def host_uuid(name):
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, "vmmlab-host-%s" % name))


def state_path(*parts):
    return os.path.join(ROOT, *parts)


def load_state():
    try:
        with open(state_path("state.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def save_state(st):
    tmp = state_path("state.json.tmp")
    with open(tmp, "w") as f:
        json.dump(st, f, indent=1)
    os.replace(tmp, state_path("state.json"))


def hosts():
    st = load_state()
    if not st:
        raise LabError("the lab is not up (run: tests/lab/lab up)")
    return st["hosts"]


def netns_path(ns):
    return "/run/netns/%s%s" % (NS, ns)


def host_enter(name):
    """The nsenter prefix that runs a command inside host NAME (net + mount + UTS)."""
    return ["nsenter", "--net=%s" % netns_path(name), "--mount=%s" % state_path("ns", name + ".mnt"),
            "--uts=%s" % state_path("ns", name + ".uts")]


def ns_exec(ns, cmd):
    return ["ip", "netns", "exec", NS + ns] + list(cmd)


def uri(name):
    """The root namespace reaches a host's libvirtd over its unix socket: no network involved."""
    return "qemu+unix:///system?socket=%s" % state_path("hosts", name, "run-libvirt", "libvirt-sock")


def tcp_uri(name):
    return "qemu+tcp://%s/system" % host_ip(name)


def tls_uri(name):
    """libvirtd over TLS with the host's lab certificates (pkipath: each host's own /etc/libvirt/pki)."""
    return "qemu+tls://%s/system?pkipath=/etc/libvirt/pki" % host_ip(name)


def virsh(name, *args, check=True, timeout=120):
    return run(["virsh", "-q", "-c", uri(name)] + list(args), check=check, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# Bringing it up
# ---------------------------------------------------------------------------------------------
def preflight():
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network and mount namespaces, libvirtd, sshd)")
    missing = [t for t in REQUIRED_TOOLS if not shutil.which(t)]
    if missing:
        raise LabError("missing tools: %s; run tests/lab/setup.sh first" % ", ".join(missing))
    for f in ("vmlinux", "initramfs.cpio"):
        if not os.path.exists(os.path.join(CACHE, "guest", f)):
            raise LabError("guest %s not built; run tests/lab/setup.sh first" % f)
    if load_state() or any(l.startswith(NS) for l in list_netns()):
        raise LabError("the lab is already up (or half up): run 'tests/lab/lab down' first")


def list_netns():
    p = run(["ip", "netns", "list"], check=False)
    return [l.split()[0] for l in p.stdout.splitlines() if l.strip()]


def add_ns(ns):
    run(["ip", "netns", "add", NS + ns])
    run(["ip", "-n", NS + ns, "link", "set", "lo", "up"])
    # IPv6 DAD would delay addresses; the lab assigns unique ones.
    run(ns_exec(ns, ["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
                     "net.ipv6.conf.default.accept_dad=0", "net.ipv4.ip_forward=0"]))


def bridge_mac(ns, br):
    """A fixed MAC per bridge. A Linux bridge without one takes the lowest MAC of its ports, and a
    guest's tap (fe:54:...) can be that: after a migration two hosts' bridges then share one MAC and
    the hosts' own traffic (libvirt, the migration stream) breaks."""
    digest = uuid.uuid5(uuid.NAMESPACE_DNS, "vmmlab-bridge-%s-%s" % (ns, br)).bytes
    return "02:18:%02x:%02x:%02x:%02x" % tuple(digest[:4])


def add_bridge(ns, br):
    # no multicast snooping: neighbour solicitations for proxied addresses (nobody joined their
    # solicited-node group) must reach every port, as on a plain switch
    run(["ip", "-n", NS + ns, "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0",
         "mcast_snooping", "0"])
    run(["ip", "-n", NS + ns, "link", "set", br, "address", bridge_mac(ns, br)])
    run(["ip", "-n", NS + ns, "link", "set", br, "up"])


def veth(ns_a, name_a, ns_b, name_b):
    """A veth created directly inside two namespaces: it never exists in the root namespace."""
    run(["ip", "link", "add", name_a, "netns", NS + ns_a, "type", "veth", "peer", "name", name_b,
         "netns", NS + ns_b])
    run(["ip", "-n", NS + ns_a, "link", "set", name_a, "up"])
    run(["ip", "-n", NS + ns_b, "link", "set", name_b, "up"])


def addr(ns, dev, cidr):
    run(["ip", "-n", NS + ns, "addr", "add", cidr, "dev", dev] + (["nodad"] if ":" in cidr else []))


def build_network(names):
    for ns in ["sw", "ctl", "cli", "sto"] + names:
        add_ns(ns)
    add_bridge("sw", "br0")
    add_bridge("sw", "br1")
    for h in names:
        add_bridge(h, "br0")
        veth(h, "up0", "sw", h)
        run(["ip", "-n", NS + h, "link", "set", "up0", "master", "br0"])
        run(["ip", "-n", NS + "sw", "link", "set", h, "master", "br0"])
        addr(h, "br0", "%s/24" % host_ip(h))
        addr(h, "br0", "%s/64" % host_ip6(h))
        if h != names[-1] or len(names) == 1:
            add_bridge(h, "br1")
            veth(h, "up1", "sw", h + "n2")
            run(["ip", "-n", NS + h, "link", "set", "up1", "master", "br1"])
            run(["ip", "-n", NS + "sw", "link", "set", h + "n2", "master", "br1"])
            addr(h, "br1", "%s/24" % host_net2_ip(h))
    for ns, ip4 in (("ctl", CTL_IP), ("cli", CLI_IP), ("sto", STO_IP)):
        veth(ns, "eth0", "sw", ns)
        run(["ip", "-n", NS + "sw", "link", "set", ns, "master", "br0"])
        addr(ns, "eth0", "%s/24" % ip4)
        addr(ns, "eth0", "%s/64" % (LAN6.network_address + int(ip4.rsplit(".", 1)[1])))


def check_routes(namespaces):
    """Every route of every lab namespace must stay inside the lab prefixes; no default route."""
    bad = []
    for ns in namespaces:
        for fam in ("-4", "-6"):
            p = run(["ip", "-n", NS + ns, "-j", fam, "route", "show", "table", "all"])
            for r in json.loads(p.stdout or "[]"):
                dst = r.get("dst", "")
                if r.get("type") in ("local", "broadcast", "multicast", "anycast") or dst in ("", None):
                    if r.get("type") in (None, "unicast") and dst in ("", None):
                        bad.append("%s: %s" % (ns, r))
                    continue
                if dst == "default":
                    bad.append("%s: default route %s" % (ns, r))
                    continue
                net = ipaddress.ip_network(dst if "/" in dst else dst + ("/128" if ":" in dst else "/32"),
                                           strict=False)
                if not any(net.version == a.version and net.subnet_of(a) for a in ALLOWED):
                    bad.append("%s: route outside the lab prefixes: %s" % (ns, dst))
    if bad:
        raise LabError("routing check failed, refusing to go on:\n  " + "\n  ".join(bad))


LIBVIRTD_CONF = """# vmmlab host {name}: lab only (no authentication on TCP; TLS with the lab's own CA)
listen_tls = 1
key_file = "/etc/libvirt/pki/host-key.pem"
cert_file = "/etc/libvirt/pki/server-cert.pem"
ca_file = "/etc/libvirt/pki/ca-cert.pem"
auth_tls = "none"
listen_tcp = 1
listen_addr = "{ip}"
auth_tcp = "none"
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_group = "root"
host_uuid = "{uuid}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
keepalive_interval = 5
keepalive_count = 5
max_clients = 200
max_workers = 40
"""

QEMU_CONF = """# vmmlab host {name}
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
migration_address = "{ip}"
migration_host = "{ip}"
migrate_tls_x509_cert_dir = "/etc/libvirt/pki/qemu"
migrate_tls_x509_verify = 1
swtpm_user = "root"
swtpm_group = "root"
"""

SSHD_CONFIG = """# vmmlab host {name}
ListenAddress {ip}
Port 22
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {root}/ssh/id_lab.pub
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 50
"""


def _openssl(*args):
    run(["openssl"] + list(args))


def make_cert(dirname, base, subject, ca=None, ext=None, key=None):
    """An RSA key (or KEY) and a certificate for SUBJECT, self-signed or signed by CA (key, cert paths)."""
    key = key or os.path.join(dirname, base + "-key.pem")
    cert = os.path.join(dirname, base + "-cert.pem")
    if not os.path.exists(key):
        _openssl("genrsa", "-out", key, "2048")
    extfile = os.path.join(dirname, base + ".ext")
    with open(extfile, "w") as f:
        f.write(ext or "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
    if ca is None:
        _openssl("req", "-x509", "-new", "-key", key, "-subj", subject, "-days", "365", "-out", cert,
                 "-extensions", "v3", "-config", _req_config(dirname, extfile))
    else:
        csr = os.path.join(dirname, base + ".csr")
        _openssl("req", "-new", "-key", key, "-subj", subject, "-out", csr, "-config", _req_config(dirname, None))
        _openssl("x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0], "-CAcreateserial", "-days", "365",
                 "-out", cert, "-extfile", extfile)
    return key, cert


def _req_config(dirname, extfile):
    path = os.path.join(dirname, "req.cnf")
    with open(path, "w") as f:
        f.write("[req]\ndistinguished_name = dn\n[dn]\n")
        if extfile:
            with open(extfile) as e:
                f.write("[v3]\n" + e.read())
    return path


def host_pki(name, ca, dest_dir):
    """NAME's TLS material signed by CA: one key, a server and a client certificate, laid out for libvirtd
    (ca-cert.pem, server-cert.pem, host-key.pem; clientcert.pem / clientkey.pem / cacert.pem for a
    qemu+tls:// URI's pkipath) and for QEMU's migration TLS (qemu/: ca-cert, server-*, client-*)."""
    os.makedirs(os.path.join(dest_dir, "qemu"), exist_ok=True)
    ip = host_ip(name)
    usage = "keyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=critical,CA:FALSE\n"
    key, server = make_cert(dest_dir, "server", "/O=vmmlab/CN=%s" % name, ca, key=os.path.join(dest_dir, "host-key.pem"),
                            ext=usage + "extendedKeyUsage=serverAuth\nsubjectAltName=IP:%s,DNS:%s\n" % (ip, name))
    _key, client = make_cert(dest_dir, "client", "/O=vmmlab/CN=%s" % name, ca, key=key,
                             ext=usage + "extendedKeyUsage=clientAuth\n")
    shutil.copy(ca[1], os.path.join(dest_dir, "ca-cert.pem"))
    for src, dst in ((ca[1], "cacert.pem"), (client, "clientcert.pem"), (key, "clientkey.pem"),
                     (ca[1], "qemu/ca-cert.pem"), (server, "qemu/server-cert.pem"), (key, "qemu/server-key.pem"),
                     (client, "qemu/client-cert.pem"), (key, "qemu/client-key.pem")):
        shutil.copy(src, os.path.join(dest_dir, dst))


@contextlib.contextmanager
def rogue_migration_cert(name):
    """Fault injection: NAME's QEMU migration TLS material from a CA no other host trusts (its own
    certificate and CA agree, so its QEMU sets TLS up; the handshake with a lab host fails), for the time
    of the with block (QEMU reads the files when a migration starts)."""
    d = state_path("pki", "rogue")
    os.makedirs(d, exist_ok=True)
    ca = make_cert(d, "ca", "/O=not vmmlab/CN=rogue CA")
    ip = host_ip(name)
    key, cert = make_cert(d, "server-" + name, "/O=not vmmlab/CN=%s" % name, ca, ext=(
        "keyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=critical,CA:FALSE\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:%s,DNS:%s\n" % (ip, name)))
    qdir = state_path("hosts", name, "etc-libvirt", "pki", "qemu")
    saved = {}
    for f in ("server-cert.pem", "server-key.pem", "ca-cert.pem"):
        with open(os.path.join(qdir, f), "rb") as fh:
            saved[f] = fh.read()
    try:
        shutil.copy(cert, os.path.join(qdir, "server-cert.pem"))
        shutil.copy(key, os.path.join(qdir, "server-key.pem"))
        shutil.copy(ca[1], os.path.join(qdir, "ca-cert.pem"))
        yield
    finally:
        for f, data in saved.items():
            with open(os.path.join(qdir, f), "wb") as fh:
                fh.write(data)


def lab_ca():
    d = state_path("pki")
    os.makedirs(d, exist_ok=True)
    if not os.path.exists(os.path.join(d, "ca-cert.pem")):
        make_cert(d, "ca", "/O=vmmlab/CN=vmmlab lab CA")
    return os.path.join(d, "ca-key.pem"), os.path.join(d, "ca-cert.pem")


def host_files(name, names):
    d = state_path("hosts", name)
    for sub in ("etc-libvirt", "run-libvirt", "var-lib-libvirt", "cache-libvirt", "log-libvirt", "local",
                "ns-tmp"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    shutil.copytree("/etc/libvirt", os.path.join(d, "etc-libvirt"), dirs_exist_ok=True, symlinks=True)
    auto = os.path.join(d, "etc-libvirt", "qemu", "networks", "autostart")
    if os.path.isdir(auto):
        for f in os.listdir(auto):
            os.unlink(os.path.join(auto, f))
    for sub in ("images", "qemu", "boot"):
        os.makedirs(os.path.join(d, "var-lib-libvirt", sub), exist_ok=True)
    os.makedirs(os.path.join(d, "log-libvirt", "qemu"), exist_ok=True)
    ip = host_ip(name)
    host_pki(name, lab_ca(), os.path.join(d, "etc-libvirt", "pki"))
    # (libvirtd finds its hook scripts when it starts: this one is always there, and refuses only when asked to)
    hooks = os.path.join(d, "etc-libvirt", "hooks")
    os.makedirs(hooks, exist_ok=True)
    with open(os.path.join(hooks, "qemu"), "w") as f:
        f.write(QEMU_HOOK)
    os.chmod(os.path.join(hooks, "qemu"), 0o755)
    refuse_incoming(name, False)
    with open(os.path.join(d, "etc-libvirt", "libvirtd.conf"), "w") as f:
        f.write(LIBVIRTD_CONF.format(name=name, ip=ip, uuid=host_uuid(name)))
    with open(os.path.join(d, "etc-libvirt", "qemu.conf"), "w") as f:
        f.write(QEMU_CONF.format(name=name, ip=ip))
    with open(os.path.join(d, "hosts"), "w") as f:
        f.write("127.0.0.1 localhost\n::1 localhost\n")
        for h in names:
            f.write("%s %s %s.vmmlab\n" % (host_ip(h), h, h))
        f.write("%s ctl\n%s client\n%s storage\n" % (CTL_IP, CLI_IP, STO_IP))
    with open(os.path.join(d, "resolv.conf"), "w") as f:
        f.write("# vmmlab: no name servers\n")
    with open(os.path.join(d, "sshd_config"), "w") as f:
        f.write(SSHD_CONFIG.format(name=name, ip=ip, dir=d, root=ROOT))
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(d, "ssh_host_ed25519_key")])


def make_host_namespace(name):
    d = state_path("hosts", name)
    mnt, uts = state_path("ns", name + ".mnt"), state_path("ns", name + ".uts")
    for f in (mnt, uts):
        open(f, "w").close()
    binds = [(os.path.join(d, src), dst) for src, dst in zip(
        ["etc-libvirt", "run-libvirt", "var-lib-libvirt", "cache-libvirt", "log-libvirt"], BIND_DIRS)]
    binds += [(os.path.join(d, "hosts"), "/etc/hosts"), (os.path.join(d, "resolv.conf"), "/etc/resolv.conf"),
              (state_path("shared"), MNT_SHARED), (os.path.join(d, "local"), MNT_LOCAL)]
    # root's shell start-up file per host, as a hypervisor has its own: bash reads ~/.bashrc in every command sshd
    # runs, and this machine's (a pyenv set-up) costs 0.1 s of CPU in each Ansible task on each host - CPU that real
    # hosts do not take from the controller's cores
    if os.path.isfile(ROOT_BASHRC):
        with open(os.path.join(d, "bashrc"), "w") as f:
            f.write("# vmmlab host %s: root's ~/.bashrc (empty)\n" % name)
        binds.append((os.path.join(d, "bashrc"), ROOT_BASHRC))
    # emulated TPMs: swtpm's local CA and logs per host too (nothing written to the machine's own)
    for sub, target in (("swtpm-localca", SWTPM_LOCALCA), ("log-swtpm", SWTPM_LOG)):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.makedirs(target, exist_ok=True)
        binds.append((os.path.join(d, sub), target))
    script = ["set -e", "hostname %s" % name]
    script += ["mount --bind '%s' '%s'" % b for b in binds]
    # A fresh sysfs shows this network namespace's devices (libvirt reads bridges and taps there);
    # keep the cgroup mounts reachable under it.
    tmp = os.path.join(d, "ns-tmp")
    script += ["if mountpoint -q /sys/fs/cgroup; then mount --move /sys/fs/cgroup '%s'; moved=1; fi" % tmp,
               "mount -t sysfs sysfs /sys",
               "if [ -n \"${moved:-}\" ]; then mount --move '%s' /sys/fs/cgroup; fi" % tmp]
    run(["nsenter", "--net=%s" % netns_path(name), "unshare", "--mount=%s" % mnt, "--uts=%s" % uts,
         "--propagation", "private", "sh", "-c", "\n".join(script)])


def libvirtd_cpu(name):
    """The CPU a host's libvirtd runs on. libvirt checks its cached QEMU capabilities against the CPUID that KVM
    reports (KVM_GET_SUPPORTED_CPUID) on every lookup, and this machine's KVM reports leaf 0x1f with the x2APIC id of
    the CPU that asks: a libvirtd free to move between CPUs found its cache 'changed' after some restarts and probed
    every QEMU binary again (8 s of a gate or a maintenance, at random). A hypervisor's CPUID does not change with the
    thread that reads it; pinned, the lab's does not either. (libvirt gives each guest's QEMU every online CPU,
    whatever its own affinity.)"""
    cpus = sorted(os.sched_getaffinity(0))    # (those this process may use: a container's cpuset, not the machine's)
    return cpus[(int(name[1:]) - 1) % len(cpus)] if name[1:].isdigit() else cpus[0]


def start_libvirtd(name):
    d = state_path("hosts", name)
    # The config path names the lab root so that a stray libvirtd is recognisable as the lab's.
    run(["taskset", "-c", str(libvirtd_cpu(name))] + host_enter(name) + [
        "libvirtd", "--daemon", "--listen", "--config", os.path.join(d, "etc-libvirt", "libvirtd.conf"),
        "--pid-file", "/run/libvirt/vmmlab-libvirtd.pid"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pid = _read_pid(os.path.join(d, "run-libvirt", "vmmlab-libvirtd.pid"))
        try:
            # 'uri' needs no QEMU capabilities (their first probe is slow under TCG and a loaded machine)
            if pid and virsh(name, "uri", check=False, timeout=20).returncode == 0:
                return pid
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.1)
    raise LabError("libvirtd on %s did not answer within 60 s (see %s)" % (
        name, os.path.join(d, "log-libvirt", "libvirtd.log")))


def start_sshd(name):
    d = state_path("hosts", name)
    run(host_enter(name) + ["/usr/sbin/sshd", "-f", os.path.join(d, "sshd_config")])
    deadline = time.monotonic() + 10
    pidfile = os.path.join(d, "sshd.pid")
    while time.monotonic() < deadline:
        pid = _read_pid(pidfile)  # the file can exist before sshd has written its PID
        if pid:
            return pid
        time.sleep(0.05)
    raise LabError("sshd on %s did not start" % name)


def define_pools(name, last):
    """Storage pools; the last host's layout differs (other pool name and path, no 'shared' pool)."""
    if last:
        pools = [("images", MNT_LOCAL)]
    else:
        pools = [("local", MNT_LOCAL), ("shared", MNT_SHARED)]
    for pool, path in pools:
        virsh(name, "pool-define-as", pool, "dir", "--target", path)
        virsh(name, "pool-start", pool)
        virsh(name, "pool-autostart", pool)


def write_inventory(names):
    inv = {"all": {
        "vars": {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": state_path("ssh", "id_lab"),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                       "-o LogLevel=ERROR -o ConnectTimeout=5",
            "ansible_python_interpreter": VENV_PY,
            "vmmlab_client_ip": CLI_IP,
        },
        "children": {"hypervisors": {"hosts": {}}},
    }}
    for h in names:
        inv["all"]["children"]["hypervisors"]["hosts"][h] = {
            "ansible_host": host_ip(h),
            "libvirt_uri": "qemu:///system",
            # libvirtd over TLS, the host's client certificate from the lab CA (a pkipath on every host):
            # the lab is a site set up for TLS, as the collection's defaults expect
            "libvirt_migration_uri": tls_uri(h),
            "libvirt_tls_uri": tls_uri(h),
            # the same libvirtd over plain TCP, for the tests of what is refused in the clear
            "libvirt_tcp_uri": tcp_uri(h),
            "lab_host_uuid": host_uuid(h),
        }
    path = state_path("inventory.json")
    with open(path, "w") as f:
        json.dump(inv, f, indent=1)
    return path


def parallel(fn, items):
    errors, results = [], {}

    def work(item):
        try:
            results[item] = fn(item)
        except Exception as e:  # pylint: disable=broad-except
            errors.append("%s: %s" % (item, e))
    threads = [threading.Thread(target=work, args=(i,)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise LabError("; ".join(errors))
    return results


def up(n_hosts=3, warm=True, compat=None):
    preflight()
    if compat is None:
        compat = os.environ.get("VMMLAB_COMPAT") == "1"
    versions = stack_versions()
    check_stack(versions, compat)
    log("stack: QEMU %s, libvirt %s%s" % (versions["qemu"], versions["libvirt"],
                                          " (compatibility pass)" if compat else ""))
    if n_hosts < 2 or n_hosts > 9:
        raise LabError("--hosts must be between 2 and 9")
    t0 = time.monotonic()
    names = host_names(n_hosts)
    for d in ("ns", "hosts", "shared", "storage", "pids", "ssh", "mnt/shared", "mnt/local", "guests"):
        os.makedirs(state_path(d), exist_ok=True)
    st = {"hosts": names, "started": time.time(), "pids": {}, "root": ROOT, "guests": {}, "versions": versions,
          "compat": compat}
    save_state(st)
    try:
        # Persistent namespace files need a private mount to live on.
        run(["mount", "--bind", state_path("ns"), state_path("ns")])
        run(["mount", "--make-private", state_path("ns")])
        build_network(names)
        check_routes(["sw", "ctl", "cli", "sto"] + names)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmmlab", "-f", state_path("ssh", "id_lab")])
        # Mount points (and sshd's privilege-separation directory) the packages may not have made
        # on a machine where their services never ran; removed again by 'down' when still empty.
        st["made_dirs"] = []
        for d in BIND_DIRS + ["/run/sshd"]:
            if not os.path.isdir(d):
                os.makedirs(d, mode=0o755)
                st["made_dirs"].append(d)
        save_state(st)
        for h in names:
            host_files(h, names)
            make_host_namespace(h)
        pids = parallel(start_libvirtd, names)
        for h in names:
            st["pids"]["%s-libvirtd" % h] = pids[h]
        save_state(st)
        for h in names:
            st["pids"]["%s-sshd" % h] = start_sshd(h)
        save_state(st)
        for h in names:
            define_pools(h, h == names[-1])
        st["inventory"] = write_inventory(names)
        if warm:
            # The lazy QEMU capability probes take seconds under TCG: pay them now, as a hypervisor that has run for a
            # while has, not in a migration or a plan. domcapabilities probes the x86_64 binary; the host's
            # capabilities (host facts, host UUID) probe every emulator binary installed - 4 s each on a fresh host.
            parallel(lambda h: (virsh(h, "domcapabilities", "--virttype", "qemu", timeout=180),
                                virsh(h, "capabilities", timeout=180)), names)
        st["up_seconds"] = round(time.monotonic() - t0, 2)
        save_state(st)
    except BaseException as e:
        log("lab up failed (%s); tearing down what was built" % e)
        try:
            down(quiet=True)
        except LabError as e2:
            log(str(e2))
        raise
    log("lab up: %d hosts in %.1f s on QEMU %s / libvirt %s; inventory %s" % (
        n_hosts, st["up_seconds"], versions["qemu"], versions["libvirt"], st["inventory"]))
    return st


# ---------------------------------------------------------------------------------------------
# Tearing it down
# ---------------------------------------------------------------------------------------------
def _comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def kill_pid(pid, expect, timeout=10.0):
    """End one process the lab started, by PID, only if it still is what the lab started."""
    comm = _comm(pid)
    if comm is None or not any(comm.startswith(e) for e in expect):
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if _comm(pid) is None or _zombie(pid):
                return True
            time.sleep(0.05)
    return _comm(pid) is None


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def lab_mounts():
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            if mp == ROOT or mp.startswith(ROOT + "/"):
                out.append(mp)
    return out


def keep_logs(dest):
    """Copy every host's libvirtd and QEMU logs to DEST (for a failed run's post-mortem)."""
    if not os.path.isdir(state_path("hosts")):
        return
    for h in os.listdir(state_path("hosts")):
        src = state_path("hosts", h, "log-libvirt")
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dest, h), dirs_exist_ok=True)


def down(quiet=False):
    st = load_state() or {}
    if os.environ.get("VMMLAB_KEEP_LOGS"):
        keep_logs(os.path.join(os.environ["VMMLAB_KEEP_LOGS"], time.strftime("%Y%m%d-%H%M%S")))
    names = st.get("hosts") or sorted(
        d for d in (os.listdir(state_path("hosts")) if os.path.isdir(state_path("hosts")) else []))
    # 1. Guests: ask each libvirtd to destroy its running domains (it ends their QEMU). A libvirtd that
    #    does not answer is not waited for: step 2 ends its QEMUs and itself by PID.
    for h in names:
        sock = state_path("hosts", h, "run-libvirt", "libvirt-sock")
        if not os.path.exists(sock):
            continue
        try:
            p = virsh(h, "list", "--name", check=False, timeout=15)
            for dom in (p.stdout or "").split():
                virsh(h, "destroy", dom, check=False, timeout=30)
        except subprocess.TimeoutExpired:
            log("libvirtd on %s does not answer: ending its guests and itself by PID" % h)
    # 2. Daemons the lab started, by PID.
    for h in names:
        run_dir = state_path("hosts", h, "run-libvirt")
        qemu_dir = os.path.join(run_dir, "qemu")
        if os.path.isdir(qemu_dir):
            for f in os.listdir(qemu_dir):
                if f.endswith(".pid") and f != "driver.pid":
                    pid = _read_pid(os.path.join(qemu_dir, f))
                    if pid:
                        kill_pid(pid, ["qemu-system"])
        pid = _read_pid(os.path.join(run_dir, "vmmlab-libvirtd.pid"))
        if pid:
            kill_pid(pid, ["libvirtd"])
        pid = _read_pid(state_path("hosts", h, "sshd.pid"))
        if pid:
            kill_pid(pid, ["sshd"])
    if os.path.isdir(state_path("pids")):
        for f in os.listdir(state_path("pids")):
            pid = _read_pid(state_path("pids", f))
            if pid:
                kill_pid(pid, ["qemu-nbd", "qemu-storage-d"])
    # 3. Anything else still running inside a lab network namespace (a probe, an ssh session).
    for ns in list_netns():
        if ns.startswith(NS):
            p = run(["ip", "netns", "pids", ns], check=False)
            for pid in (p.stdout or "").split():
                if pid.isdigit() and int(pid) != os.getpid():
                    kill_pid(int(pid), [""], timeout=3)
    # 4. Mounts (namespace files last), namespaces, state.
    for mp in sorted(lab_mounts(), key=len, reverse=True):
        run(["umount", "-l", mp], check=False)
    for ns in list_netns():
        if ns.startswith(NS):
            run(["ip", "netns", "del", ns], check=False)
    for d in reversed(st.get("made_dirs", [])):
        if os.path.isdir(d) and not os.listdir(d):
            os.rmdir(d)
    left = leftovers(include_state=False)
    if not left and os.path.isdir(ROOT):
        shutil.rmtree(ROOT, ignore_errors=True)
    left = leftovers()
    if left:
        raise LabError("lab down left something behind:\n  " + "\n  ".join(left))
    if not quiet:
        log("lab down: nothing left")


def leftovers(include_state=True):
    """What a lab leaves on the machine: namespaces, mounts, state, lab processes."""
    left = ["network namespace %s" % ns for ns in list_netns() if ns.startswith(NS)]
    left += ["mount %s" % m for m in lab_mounts()]
    if include_state and os.path.exists(ROOT):
        left.append("state directory %s" % ROOT)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if _zombie(int(pid)):
            continue
        if (ROOT in cmd or "vmm.name=" in cmd) and any(
                k in cmd for k in ("libvirtd", "qemu-system", "sshd", "qemu-nbd")):
            left.append("process %s: %s" % (pid, cmd[:120]))
    return left


# ---------------------------------------------------------------------------------------------
# Guests
# ---------------------------------------------------------------------------------------------
DISK_MIB = 64


def guest_index(st, name):
    g = st["guests"].get(name)
    if g:
        return g["index"]
    # never reused within a lab: a removed guest's MAC, addresses and NBD port may still be remembered
    # somewhere (bridge forwarding tables, neighbour caches, a libvirt job that outlived its guest)
    i = max([st.get("next_index", 1)] + [g["index"] + 1 for g in st["guests"].values()])
    if i > 150:
        raise LabError("the lab ran out of guest addresses (150 guests per lab)")
    st["next_index"] = i + 1
    return i


def guest_ip(index):
    return str(LAN4.network_address + 100 + index)


def routed_ip(index):
    return str(ROUTED4.network_address + 100 + index)


def guest_ip6(index):
    return str(LAN6.network_address + 0x100 + index)


def routed_ip6(index):
    return str(ROUTED6.network_address + 0x200 + index)


RTR_IP6 = str(LAN6.network_address + 5)
ROUTED_GW_MAC = "02:00:00:18:02:fe"
ROUTED_GW6 = "fe80::ff:fe18:2fe"   # the link-local address of ROUTED_GW_MAC (EUI-64)


def guest_mac(index):
    return "52:54:00:18:%02x:%02x" % (index // 256, index % 256)


def start_nbd(name, image, port):
    pidfile = state_path("pids", "nbd-%s.pid" % name)
    run(ns_exec("sto", ["qemu-nbd", "--fork", "--persistent", "--shared=16", "-f", "raw", "--cache=none",
                        "-x", name, "-b", STO_IP, "-p", str(port), "--pid-file", pidfile, image]))
    return _read_pid(pidfile)


def domain_xml(name, index, memory_mib, disk_xml, cmdline, domain_type="qemu", network="br0", extra="", cpu=""):
    guest = os.path.join(CACHE, "guest")
    return """<domain type='{type}'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>{mem}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{guest}/vmlinux</kernel>
    <initrd>{guest}/initramfs.cpio</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  {cpu}
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    {disk}
    <interface type='bridge'>
      <mac address='{mac}'/>
      <source bridge='{network}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='/var/log/libvirt/qemu/{name}.console.log' append='on'/>
    </serial>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <memballoon model='none'/>
    {extra}
  </devices>
</domain>
""".format(type=domain_type, name=name, uuid=uuid.uuid5(uuid.NAMESPACE_DNS, "vmmlab-guest-" + name),
           mem=memory_mib, guest=guest, cmdline=cmdline, disk=disk_xml, mac=guest_mac(index),
           network=network, extra=extra, cpu=cpu)


def define_guest(name, host, memory_mib=256, mem_workload_mib=0, mem_rate=0, disk="nbd",
                 disk_ms=100, start=True, domain_type="qemu", network="br0", extra_devices="", cpu_xml="",
                 routed=False, disk_cache="none"):
    """Define (and start) a lab guest on HOST. disk: nbd | shared | local | none.
    extra_devices: more <devices> XML (a hostdev, say, to make the guest unmigratable).
    disk_cache: of a shared or local disk (writeback on shared storage rules out live migration)."""
    st = load_state()
    if not st:
        raise LabError("the lab is not up")
    if host not in st["hosts"]:
        raise LabError("unknown host %s" % host)
    if name in st["guests"]:          # defined before (a rerun of a test): start from scratch
        remove_guest(name)
        st = load_state()
    index = guest_index(st, name)
    disk_xml, image, nbd = "", None, None
    if disk == "nbd":
        image = state_path("storage", name + ".raw")
        run(["qemu-img", "create", "-q", "-f", "raw", image, "%dM" % DISK_MIB])
        port = NBD_BASE_PORT + index
        nbd = {"port": port, "pid": start_nbd(name, image, port)}
        disk_xml = """<disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source protocol='nbd' name='{name}'><host name='{ip}' port='{port}'/></source>
      <target dev='vda' bus='virtio'/>
    </disk>""".format(name=name, ip=STO_IP, port=port)
    elif disk in ("shared", "local"):
        base = state_path("shared") if disk == "shared" else state_path("hosts", host, "local")
        image = os.path.join(base, name + ".qcow2")
        run(["qemu-img", "create", "-q", "-f", "qcow2", image, "%dM" % DISK_MIB])
        path = os.path.join(MNT_SHARED if disk == "shared" else MNT_LOCAL, name + ".qcow2")
        disk_xml = """<disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='{cache}'/>
      <source file='{path}'/>
      <target dev='vda' bus='virtio'/>
    </disk>""".format(path=path, cache=disk_cache)
    elif disk != "none":
        raise LabError("disk must be nbd, shared, local or none")
    ip4 = routed_ip(index) if routed else guest_ip(index)
    cmd = ["console=ttyS0", "quiet", "panic=-1", "oops=panic", "vmm.name=%s" % name,
           "vmm.ip=%s/%d" % (ip4, 32 if routed else 24), "vmm.mem=%d" % mem_workload_mib, "vmm.memrate=%s" % mem_rate]
    if routed:
        network = "br2"
        cmd += ["vmm.route=%s" % LAN4, "vmm.ip6=%s/128" % routed_ip6(index), "vmm.route6=%s" % LAN6,
                "vmm.gw6=%s" % ROUTED_GW6]
    else:
        cmd.append("vmm.ip6=%s/64" % guest_ip6(index))
    if disk != "none":
        cmd += ["vmm.disk=vda", "vmm.diskms=%d" % disk_ms]
    xml = domain_xml(name, index, memory_mib, disk_xml, " ".join(cmd), domain_type, network, extra_devices,
                     cpu_xml)
    xml_path = state_path("guests", name + ".xml")
    with open(xml_path, "w") as f:
        f.write(xml)
    virsh(host, "define", xml_path)
    if routed:
        run(["ip", "-n", NS + host, "route", "replace", "%s/32" % ip4, "dev", "br2"])
        run(["ip", "-n", NS + host, "-6", "route", "replace", "%s/128" % routed_ip6(index), "dev", "br2"])
        run(["ip", "-n", NS + host, "-6", "neigh", "replace", "proxy", routed_ip6(index), "dev", "br0"])
    g = {"index": index, "host": host, "ip": ip4, "ip6": routed_ip6(index) if routed else guest_ip6(index),
         "mac": guest_mac(index),
         "routed": routed,
         "disk": disk, "image": image, "nbd": nbd, "memory_mib": memory_mib,
         "mem_workload_mib": mem_workload_mib, "mem_rate": mem_rate}
    st["guests"][name] = g
    if nbd:
        st["pids"]["nbd-" + name] = nbd["pid"]
    save_state(st)
    if start:
        virsh(host, "start", name)
    return g


def thread_states(host, name):
    """{thread name: kernel wait channel} of the guest's QEMU on HOST (where each thread is blocked)."""
    pid = _read_pid(state_path("hosts", host, "run-libvirt", "qemu", name + ".pid"))
    out = {}
    for tid in sorted(os.listdir("/proc/%d/task" % pid)) if pid and os.path.isdir("/proc/%d/task" % pid) else []:
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                comm = f.read().strip()
            with open("/proc/%d/task/%s/wchan" % (pid, tid)) as f:
                out["%s/%s" % (comm, tid)] = f.read().strip()
        except OSError:
            continue
    return out


def kill_libvirtd(host):
    """Fault injection: SIGKILL a host's libvirtd (by its PID); its QEMU processes keep running."""
    pid = _read_pid(state_path("hosts", host, "run-libvirt", "vmmlab-libvirtd.pid"))
    if pid and _comm(pid) == "libvirtd":
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _comm(pid) and not _zombie(pid):
            time.sleep(0.05)
    return pid


def restart_libvirtd(host):
    """Start a host's libvirtd again (after kill_libvirtd); it reconnects to its running guests."""
    pidfile = state_path("hosts", host, "run-libvirt", "vmmlab-libvirtd.pid")
    if os.path.exists(pidfile):
        os.unlink(pidfile)
    st = load_state()
    st["pids"]["%s-libvirtd" % host] = start_libvirtd(host)
    save_state(st)


# Fault injection: a destination whose libvirt refuses an incoming migration, as a site's own qemu hook may (libvirt
# calls it on the destination with "migrate begin" before the incoming guest exists; a failure cancels the
# migration there - the source keeps running the guest).
QEMU_HOOK = """#!/bin/sh
# vmmlab: refuse incoming migrations while /etc/libvirt/hooks/refuse-incoming exists (tests/lab/vmmlab.py)
if [ "$2" = migrate ] && [ -e /etc/libvirt/hooks/refuse-incoming ]; then
    echo "vmmlab: this host refuses incoming migrations (its qemu hook)" >&2
    exit 1
fi
exit 0
"""


def refuse_incoming(host, refuse):
    """Have HOST's libvirt refuse (or accept again) every incoming migration, through its qemu hook."""
    flag = state_path("hosts", host, "etc-libvirt", "hooks", "refuse-incoming")
    if refuse:
        with open(flag, "w") as f:
            f.write("refused by tests/lab\n")
    elif os.path.exists(flag):
        os.unlink(flag)


def set_link(host, up):
    """Fault injection: cut (or restore) a host's uplink at the switch."""
    run(["ip", "-n", NS + "sw", "link", "set", host, "up" if up else "down"])


def console_log(name, tail=4000):
    """The guest's serial console, from every host that ran it."""
    out = []
    for h in (load_state() or {}).get("hosts", []):
        path = state_path("hosts", h, "log-libvirt", "qemu", name + ".console.log")
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                out.append("--- %s\n%s" % (h, f.read()[-tail:]))
    return "\n".join(out)


def routed_up():
    """Add the routed design: a router namespace on the lab segment that reaches 198.18.2.0/24 on-link,
    and on every hypervisor an isolated bridge br2 for /32 guests, proxy-ARP and forwarding, so that a
    guest is reachable only through the hypervisor that holds a host route for it."""
    st = load_state()
    if st.get("routed"):
        return
    add_ns("rtr")
    veth("rtr", "eth0", "sw", "rtr")
    run(["ip", "-n", NS + "sw", "link", "set", "rtr", "master", "br0"])
    addr("rtr", "eth0", "%s/24" % RTR_IP)
    addr("rtr", "eth0", "%s/64" % RTR_IP6)
    run(["ip", "-n", NS + "rtr", "route", "add", str(ROUTED4), "dev", "eth0"])
    run(["ip", "-n", NS + "rtr", "-6", "route", "add", str(ROUTED6), "dev", "eth0"])
    # the controller reaches the routed guests through the router (a vantage point beyond it)
    run(ns_exec("rtr", ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]))
    run(["ip", "-n", NS + "ctl", "route", "add", str(ROUTED4), "via", RTR_IP])
    run(["ip", "-n", NS + "ctl", "-6", "route", "add", str(ROUTED6), "via", RTR_IP6])
    for h in st["hosts"]:
        add_bridge(h, "br2")
        # one gateway MAC and address on every hypervisor (an anycast gateway): a guest that moves keeps
        # a valid neighbour entry for its gateway
        run(["ip", "-n", NS + h, "link", "set", "br2", "address", ROUTED_GW_MAC])
        addr(h, "br2", "%s/32" % (ROUTED4.network_address + 254))
        # IPv6: the hypervisor answers for its guests' /128s on br0 (proxy NDP is per address in Linux)
        # without the default 0.8 s random delay; the guests route through its link-local address
        run(ns_exec(h, ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.br0.proxy_arp=1",
                        "net.ipv4.conf.br2.proxy_arp=1", "net.ipv4.conf.all.rp_filter=0",
                        "net.ipv4.conf.br0.rp_filter=0", "net.ipv4.conf.br2.rp_filter=0",
                        "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.br0.proxy_ndp=1",
                        "net.ipv6.conf.br2.proxy_ndp=1", "net.ipv6.neigh.br0.proxy_delay=0",
                        "net.ipv6.neigh.br2.proxy_delay=0"]))
    check_routes(["sw", "ctl", "cli", "sto", "rtr"] + st["hosts"])
    st["routed"] = True
    save_state(st)


def host_routes(host):
    """{prefix: dev} of a hypervisor's host routes in the routed range."""
    out = {}
    for fam, net, plen in (("-4", ROUTED4, "/32"), ("-6", ROUTED6, "/128")):
        for line in run(["ip", "-n", NS + host, fam, "route", "show", "root", str(net)]).stdout.splitlines():
            parts = line.split()
            if parts and "dev" in parts:
                out[parts[0] if "/" in parts[0] else parts[0] + plen] = parts[parts.index("dev") + 1]
    return out


# what a guest kernel prints when it crashes (a corrupted virtio ring "is not a head")
GUEST_CRASH_SIGNS = ("Kernel panic", "Oops:", "BUG: ", "general protection fault", "is not a head!",
                     "soft lockup")


def panicked(name):
    """Whether the guest's kernel crashed (panic, oops, BUG, a corrupted virtio ring) on any host, as its
    console shows."""
    log = console_log(name, tail=200000)
    return any(sign in log for sign in GUEST_CRASH_SIGNS)


def remove_guest(name):
    """Destroy and undefine a guest everywhere and stop its NBD server (to define it anew)."""
    st = load_state()
    g = st["guests"].pop(name, None)
    # destroy everywhere first: a migration job stuck on one host (a broken post-copy) waits for the
    # other host's QEMU and ends only once that one is gone
    for h in st["hosts"]:
        virsh(h, "destroy", name, check=False)
    for h in st["hosts"]:
        if virsh(h, "domstate", name, check=False).returncode == 0 and \
                virsh(h, "undefine", name, "--nvram", "--tpm", check=False).returncode != 0:
            virsh(h, "undefine", name, check=False)
    if g and g.get("nbd"):
        kill_pid(g["nbd"]["pid"], ["qemu-nbd"])
        st["pids"].pop("nbd-" + name, None)
    for h in st["hosts"]:
        # the console log, and local disk images a storage-copying move left behind
        for path in (state_path("hosts", h, "log-libvirt", "qemu", name + ".console.log"),
                     os.path.join(state_path("hosts", h, "local"), name + ".qcow2")):
            if os.path.exists(path):
                os.unlink(path)
    save_state(st)


def set_guest_host(name, host):
    """Record where a guest runs now (after a migration)."""
    st = load_state()
    st["guests"][name]["host"] = host
    save_state(st)


# ---------------------------------------------------------------------------------------------
# Probes (always run inside the client namespace)
# ---------------------------------------------------------------------------------------------
def probe_cmd(*args, ns="cli"):
    python = VENV_PY if os.path.exists(VENV_PY) else sys.executable
    return ns_exec(ns, [python, os.path.join(HERE, "probe.py")] + list(args))


def guest_status(ip, timeout=2.0, ns="cli"):
    p = run(probe_cmd("status", ip, "--timeout", str(timeout), ns=ns), check=False)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)


def wait_guest(ip, timeout=60.0, ns="cli", disk=False):
    """The guest's first status; with DISK, the first that has its disk writer's report (the writer
    reports once it has read back every record of the earlier boots)."""
    deadline = time.monotonic() + timeout
    p = run(probe_cmd("wait", ip, "--timeout", str(timeout), ns=ns), check=False, timeout=timeout + 10)
    if p.returncode != 0:
        raise LabError("guest %s did not answer within %.0f s: %s" % (ip, timeout, p.stderr.strip()))
    st = json.loads(p.stdout)
    while disk and "disk_recovered" not in (st or {}):
        if time.monotonic() > deadline:
            raise LabError("guest %s answers but its disk writer did not report within %.0f s: %s" % (
                ip, timeout, st))
        time.sleep(0.2)
        st = guest_status(ip, ns=ns)
    return st


class Blackout:
    """Ping a guest from the client namespace (or NS) at HZ while a block runs; .result has the figures."""

    def __init__(self, ip, hz=100, ns="cli", times=False):
        self.ip, self.hz, self.ns, self.times, self.result = ip, hz, ns, times, None
        self.proc = None
        self.out = None

    def __enter__(self):
        self.out = tempfile.TemporaryFile(mode="w+")
        args = ["ping", self.ip, "--hz", str(self.hz)] + (["--times"] if self.times else [])
        self.proc = subprocess.Popen(probe_cmd(*args, ns=self.ns), stdout=self.out,
                                     stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        time.sleep(0.5)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.seek(0)
        text = self.out.read()
        self.out.close()
        try:
            self.result = json.loads(text)
        except ValueError:
            self.result = {"error": "probe printed no result: %s %s" % (text, self.proc.stderr.read())}
        return False

    def first_reply_after(self, t):
        """Seconds from monotonic time T to the first reply after it (None: no reply)."""
        later = [r for r in (self.result or {}).get("reply_times", []) if r > t]
        return round(later[0] - t, 4) if later else None


def disk_records(image, fmt="raw"):
    """Read a guest disk's counter records from the image file: (last seq, gaps)."""
    path = image
    tmp = None
    if fmt == "qcow2":
        tmp = image + ".check.raw"
        run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", image, tmp])
        path = tmp
    import struct
    magic = 0x31434C42414C4D56
    last = gaps = 0
    try:
        with open(path, "rb") as f:
            while True:
                rec = f.read(512)
                if len(rec) < 24:
                    break
                m, seq, chk = struct.unpack("<QQQ", rec[:24])
                if m != magic or chk != ((seq * 0xD6E8FEB86659FD93) & 0xFFFFFFFFFFFFFFFF) ^ magic:
                    break
                if seq != last + 1:
                    gaps += 1
                last = seq
    finally:
        if tmp:
            os.unlink(tmp)
    return last, gaps


# ---------------------------------------------------------------------------------------------
# Ansible, run from the controller namespace against the lab inventory
# ---------------------------------------------------------------------------------------------
def collections_path():
    """A collections path holding this checkout as ansible_collections/vmmigration/libvirt."""
    root = state_path("collections")
    link = os.path.join(root, "ansible_collections", "vmmigration", "libvirt")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(TOP, link)
    return root


def ansible_env():
    env = dict(os.environ)
    for d in ("tmp", "cp"):
        os.makedirs(state_path("ansible", d), exist_ok=True)
    env.update({
        "PATH": os.path.join(TOP, ".venv", "bin") + os.pathsep + env.get("PATH", ""),
        "ANSIBLE_CONFIG": os.path.join(TOP, "tests", "lab", "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": collections_path(),
        "ANSIBLE_LOCAL_TEMP": state_path("ansible", "tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": state_path("ansible", "cp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    })
    return env


def playbook(path, extra_vars=None, limit=None, check=False, timeout=900, args=()):
    """Run ansible-playbook inside the controller namespace; returns the CompletedProcess."""
    env = ansible_env()
    cmd = [os.path.join(TOP, ".venv", "bin", "ansible-playbook"), "-i", state_path("inventory.json"), path]
    if extra_vars:
        fd, vars_file = tempfile.mkstemp(prefix="vars-", suffix=".json", dir=state_path("ansible", "tmp"))
        with os.fdopen(fd, "w") as f:
            json.dump(extra_vars, f)
        cmd += ["-e", "@" + vars_file]
    if limit:
        cmd += ["--limit", limit]
    if check:
        cmd += ["--check"]
    cmd += list(args)
    return run(ns_exec("ctl", cmd), check=False, timeout=timeout, env=env)


def runner(path, extra_vars, ident, check=False, timeout=900):
    """Run a playbook through ansible-runner (as AWX does) inside the controller namespace: a private data
    directory under the lab's state, EXTRA_VARS as a survey sends them. Returns {status, rc, events, artifact_dir,
    stdout} (tests/lab/runner_job.py)."""
    env = ansible_env()
    pdd = state_path("runner", ident)
    shutil.rmtree(pdd, ignore_errors=True)
    os.makedirs(pdd)
    keep = ("PATH", "ANSIBLE_CONFIG", "ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_LOCAL_TEMP", "ANSIBLE_SSH_CONTROL_PATH_DIR",
            "ANSIBLE_NOCOLOR", "ANSIBLE_FORCE_COLOR")
    job = {"dir": pdd, "playbook": path, "inventory": state_path("inventory.json"), "extravars": extra_vars,
           "check": check, "ident": ident, "envvars": dict((k, env[k]) for k in keep if k in env)}
    p = run(ns_exec("ctl", [VENV_PY, os.path.join(TOP, "tests", "lab", "runner_job.py"), json.dumps(job)]),
            check=False, timeout=timeout, env=env)
    if p.returncode != 0 or not p.stdout.strip():
        raise LabError("ansible-runner did not run the job (%d): %s" % (p.returncode, (p.stderr or "")[-3000:]))
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def status():
    st = load_state()
    if not st:
        print("lab: down")
        left = leftovers()
        for l in left:
            print("  leftover: %s" % l)
        return 1 if left else 0
    print("lab: up (%d hosts, root %s, up in %ss; QEMU %s, libvirt %s%s)" % (
        len(st["hosts"]), ROOT, st.get("up_seconds"), st.get("versions", {}).get("qemu"),
        st.get("versions", {}).get("libvirt"), ", compatibility pass" if st.get("compat") else ""))
    print("inventory: %s" % st.get("inventory"))
    for h in st["hosts"]:
        lv = _read_pid(state_path("hosts", h, "run-libvirt", "vmmlab-libvirtd.pid"))
        sd = _read_pid(state_path("hosts", h, "sshd.pid"))
        p = virsh(h, "list", "--all", check=False, timeout=10)
        doms = " ".join("%s(%s)" % (l.split()[1], " ".join(l.split()[2:])) for l in p.stdout.splitlines()
                        if l.strip()) if p.returncode == 0 else "libvirtd not answering"
        print("  %s %s libvirtd=%s%s sshd=%s%s uuid=%s domains: %s" % (
            h, host_ip(h), lv, "" if lv and _comm(lv) else "(dead)", sd, "" if sd and _comm(sd) else "(dead)",
            host_uuid(h), doms or "-"))
    for name, g in sorted(st["guests"].items()):
        print("  guest %s ip=%s disk=%s defined on %s" % (name, g["ip"], g["disk"], g["host"]))
    check_routes(["sw", "ctl", "cli", "sto"] + st["hosts"])
    print("routes: only lab prefixes, no default route")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="lab", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up", help="bring the lab up")
    p.add_argument("--hosts", type=int, default=3)
    p.add_argument("--no-warm", action="store_true", help="skip the QEMU capability warm-up")
    p.add_argument("--compat", action="store_true",
                   help="allow a QEMU older than 9.0 (its TCG migrations corrupt guests): compatibility pass")
    sub.add_parser("down", help="tear the lab down (idempotent)")
    sub.add_parser("status", help="what is up")
    sub.add_parser("inventory", help="print the Ansible inventory path")
    p = sub.add_parser("ssh", help="ssh to a host from the controller namespace")
    p.add_argument("host")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("virsh", help="virsh against a host's libvirtd (unix socket)")
    p.add_argument("host")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p = sub.add_parser("exec", help="run a command in a lab namespace (ctl, cli, sto, sw, hN)")
    p.add_argument("ns")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("playbook", help="ansible-playbook from the controller namespace, lab inventory, this "
                                        "checkout as vmmigration.libvirt")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p = sub.add_parser("guest", help="define and start a guest")
    p.add_argument("name")
    p.add_argument("--host", default="h1")
    p.add_argument("--memory", type=int, default=256, help="guest RAM, MiB")
    p.add_argument("--mem-workload", type=int, default=0, help="MiB the memory writer rewrites per pass")
    p.add_argument("--mem-rate", type=float, default=0, help="memory writer pace, MiB/s (0: flat out)")
    p.add_argument("--disk", default="nbd", choices=["nbd", "shared", "local", "none"])
    p.add_argument("--no-start", action="store_true")
    p = sub.add_parser("guest-status", help="a guest's status, asked from the client namespace")
    p.add_argument("name")
    p = sub.add_parser("guest-remove", help="destroy and undefine a guest on every host")
    p.add_argument("name")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "up":
            up(a.hosts, warm=not a.no_warm, compat=a.compat or None)
        elif a.cmd == "down":
            down()
        elif a.cmd == "status":
            return status()
        elif a.cmd == "inventory":
            hosts()
            print(state_path("inventory.json"))
        elif a.cmd == "ssh":
            hosts()
            cmd = ns_exec("ctl", ["ssh", "-i", state_path("ssh", "id_lab"), "-o", "StrictHostKeyChecking=no",
                                  "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                                  "root@%s" % host_ip(a.host)] + a.command)
            return subprocess.call(cmd)
        elif a.cmd == "virsh":
            hosts()
            return subprocess.call(["virsh", "-c", uri(a.host)] + a.args)
        elif a.cmd == "exec":
            hosts()
            if a.ns.startswith("h") and a.ns[1:].isdigit():
                return subprocess.call(host_enter(a.ns) + a.command)
            return subprocess.call(ns_exec(a.ns, a.command))
        elif a.cmd == "playbook":
            hosts()
            env = ansible_env()
            cmd = [os.path.join(TOP, ".venv", "bin", "ansible-playbook"), "-i", state_path("inventory.json")] + a.args
            return subprocess.call(ns_exec("ctl", cmd), env=env)
        elif a.cmd == "guest":
            g = define_guest(a.name, a.host, a.memory, a.mem_workload, a.mem_rate, a.disk, start=not a.no_start)
            if not a.no_start:
                g["status"] = wait_guest(g["ip"])
            print(json.dumps(g, indent=1))
        elif a.cmd == "guest-status":
            g = load_state()["guests"][a.name]
            print(json.dumps(guest_status(g["ip"]), indent=1))
        elif a.cmd == "guest-remove":
            hosts()
            remove_guest(a.name)
    except LabError as e:
        print("lab: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
