"""Secure by default, in the lab: a guest's memory never crosses the network in the clear unless someone
said so, and the wire shows it.

The lab hosts are set up for TLS (the lab CA's certificates for libvirtd and for QEMU's migration). A host
"not set up" is one whose QEMU migration certificate directory is moved aside for the time of a test.
Proof on the wire: tcpdump in a host's network namespace records QEMU's migration ports while a move runs;
the capture's TCP payloads are searched for a string of the guest's own program (in its memory, so in any
stream that carries its memory in the clear).
"""
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position
from test_migrate import integrity, where  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOKS = os.path.join(L.TOP, "playbooks")
# a string of the guest's program (labguest.c): it sits in the guest's RAM, hence in a clear memory stream
MARKER = b"mem_bad_words="


@contextlib.contextmanager
def without_migration_tls(host):
    """HOST's QEMU migration certificates moved aside (a host not set up for TLS) for the with block."""
    qdir = L.state_path("hosts", host, "etc-libvirt", "pki", "qemu")
    aside = qdir + ".aside"
    os.rename(qdir, aside)
    try:
        yield
    finally:
        os.rename(aside, qdir)


@contextlib.contextmanager
def capture(host, path):
    """tcpdump inside HOST's network namespace on QEMU's migration ports, for the with block. Ended by
    its PID (the lab started it)."""
    cmd = L.host_enter(host) + ["tcpdump", "-i", "any", "-s", "0", "-U", "-Z", "root", "-w", path,
                                "tcp portrange 49152-49215"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.1)
    time.sleep(0.5)
    try:
        assert p.poll() is None, "tcpdump did not start: %s" % p.stderr.read().decode()
        yield p
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def tcp_streams(path):
    """The TCP payloads of a pcap file, concatenated per direction: {(src, sport, dst, dport): bytes}."""
    with open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack("<I", data[:4])
    endian = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
    linktype, = struct.unpack(endian + "I", data[20:24])
    link_len = {113: 16, 276: 20, 1: 14}[linktype]
    streams, seen, pos = {}, set(), 24
    while pos + 16 <= len(data):
        _s, _u, incl, _orig = struct.unpack(endian + "IIII", data[pos:pos + 16])
        pkt = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        ip = pkt[link_len:]
        if not ip:
            continue
        if ip[0] >> 4 == 4:
            ihl, proto, src, dst = (ip[0] & 15) * 4, ip[9], ip[12:16], ip[16:20]
            total = struct.unpack(">H", ip[2:4])[0]
            ip = ip[:total]
        elif ip[0] >> 4 == 6:
            ihl, proto, src, dst = 40, ip[6], ip[8:24], ip[24:40]
        else:
            continue
        if proto != 6:
            continue
        tcp = ip[ihl:]
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        payload = tcp[(tcp[12] >> 4) * 4:]
        key = (src, sport, dst, dport)
        if not payload or (key, seq) in seen:      # a packet seen twice (-i any) or retransmitted
            continue
        seen.add((key, seq))
        streams[key] = streams.get(key, b"") + payload
    return streams


def wire(path):
    """(payload bytes captured, how many times MARKER shows in them)."""
    streams = tcp_streams(path)
    return sum(len(s) for s in streams.values()), sum(s.count(MARKER) for s in streams.values())


def move(vm, src, dst, args=(), **extra):
    extra = dict({"vm": vm, "source": src, "destination": dst,
                  "migrate_vm_options": {"headroom_mib": 64}}, **extra)
    return L.playbook(os.path.join(PLAYBOOKS, "migrate_vm.yml"), extra_vars=extra, args=args)


def test_plaintext_refused_by_default_allowed_when_said_and_seen_on_the_wire(lab, figures):
    """h2 not set up for TLS: the default move is refused before anything happens, naming the fix; with
    migrate_vm_allow_plaintext it moves in the clear and the guest's memory is readable on the wire. Back
    with the defaults between hosts set up for TLS: the stream is TLS and the same search finds nothing."""
    g = L.define_guest("sec1", "h1", disk="nbd", mem_workload_mib=16, mem_rate=8)
    plain, tls = L.state_path("sec-plain.pcap"), L.state_path("sec-tls.pcap")
    status = L.state_path("status-sec1.json")
    try:
        L.wait_guest(g["ip"], disk=True)
        before = L.guest_status(g["ip"])
        with without_migration_tls("h2"):
            refused = move("sec1", "h1", "h2")
            assert refused.returncode != 0, refused.stdout[-3000:]
            out = refused.stdout
            assert "in the clear" in out and "is not set up for TLS migration" in out, out[-3000:]
            assert "migrate_tls_x509_cert_dir" in out and "allow_plaintext" in out and "server-cert.pem" in out
            assert where(lab, "sec1") == {"h1": "running"}
            integrity(before, L.guest_status(g["ip"]), "sec1")
            with capture("h2", plain):
                allowed = move("sec1", "h1", "h2", migrate_vm_allow_plaintext=True,
                               migrate_vm_options={"headroom_mib": 64, "status_file": status})
            assert allowed.returncode == 0, allowed.stdout[-4000:]
            assert "stream plaintext" in allowed.stdout, allowed.stdout[-3000:]
            assert where(lab, "sec1") == {"h2": "running"}
            integrity(before, L.guest_status(g["ip"]), "sec1")
            assert oct(os.stat(status).st_mode & 0o777) == "0o600"
        plain_bytes, plain_hits = wire(plain)
        # h2 set up for TLS again: back with the defaults, the stream captured where it arrives
        with capture("h1", tls):
            back = move("sec1", "h2", "h1")
        assert back.returncode == 0, back.stdout[-4000:]
        assert "stream tls" in back.stdout, back.stdout[-3000:]
        assert where(lab, "sec1") == {"h1": "running"}
        integrity(before, L.guest_status(g["ip"]), "sec1")
        tls_bytes, tls_hits = wire(tls)
        figures["wire"] = {"plaintext": {"payload_mib": round(plain_bytes / 2 ** 20, 1), "marker_hits": plain_hits},
                           "tls": {"payload_mib": round(tls_bytes / 2 ** 20, 1), "marker_hits": tls_hits}}
        # both captures hold the memory stream (the guest's 16 MiB rewritten set at least)
        assert plain_bytes > 16 * 2 ** 20 and tls_bytes > 16 * 2 ** 20, figures["wire"]
        assert plain_hits > 0, "the clear stream should show the guest's memory: %s" % figures["wire"]
        assert tls_hits == 0, "the guest's memory is readable in the default (TLS) stream: %s" % figures["wire"]
    finally:
        for f in (plain, tls):
            if os.path.exists(f):
                os.unlink(f)
        for h in ("h1", "h2"):
            L.virsh(h, "destroy", "sec1", check=False)
            L.virsh(h, "undefine", "sec1", check=False)


def expired_cert(path, key_path):
    """A server certificate for h2 from the lab CA, with h2's key, that expired yesterday."""
    # pylint: disable=import-outside-toplevel
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
    ca_key_path, ca_cert_path = L.lab_ca()
    with open(ca_key_path, "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    with open(ca_cert_path, "rb") as f:
        ca_cert = x509.load_pem_x509_certificate(f.read())
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "h2")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=30)).not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(L.host_ip("h2"))),
                                                        x509.DNSName("h2")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def test_an_expired_certificate_is_caught_before_a_drain_starts(lab, figures):
    """h2's QEMU migration certificate expired yesterday: the preflight (the drain's first step) fails
    before anything moves, naming the host and the file."""
    qdir = L.state_path("hosts", "h2", "etc-libvirt", "pki", "qemu")
    cert = os.path.join(qdir, "server-cert.pem")
    with open(cert, "rb") as f:
        saved = f.read()
    try:
        expired_cert(cert, os.path.join(qdir, "server-key.pem"))
        p = L.playbook(os.path.join(PLAYBOOKS, "preflight.yml"), extra_vars={"source": "h1", "preflight_plan_dir": L.state_path("plans")})
        assert p.returncode != 0, p.stdout[-3000:]
        assert "h2: QEMU's migration server certificate /etc/libvirt/pki/qemu/server-cert.pem expired on" in p.stdout, \
            p.stdout[-3000:]
        assert "Refuse certificates that will fail the handshake" in p.stdout
        figures["expired"] = [l.strip() for l in p.stdout.splitlines() if "expired on" in l][:1]
    finally:
        with open(cert, "wb") as f:
            f.write(saved)
    ok = L.playbook(os.path.join(PLAYBOOKS, "preflight.yml"), extra_vars={"source": "h1", "preflight_plan_dir": L.state_path("plans")})
    assert ok.returncode == 0, ok.stdout[-3000:]
    assert "expires in" not in ok.stdout      # the lab's certificates are good for a year: no warning


PLANTED = "PLANTED-S3CRET-0x5eed"


def test_a_drain_with_the_defaults_moves_over_tls_and_writes_down_no_secret(lab, figures):
    """The evacuate_host playbook with its defaults between hosts set up for TLS: the move is encrypted (the
    report says so per VM). The destination's URI carries a planted password (libvirt takes user:password@):
    it shows nowhere - not in the output, the report, the journal or the status files - and what is
    written down is its owner's only (0600 files, 0700 directories)."""
    g = L.define_guest("sec2", "h1", disk="nbd")
    inv = L.state_path("sec-inventory.json")
    with open(inv, "w") as f:
        json.dump({"all": {"children": {"hypervisors": {"hosts": {"h2": {
            "libvirt_migration_uri": "qemu+tcp://vmm:%s@%s/system" % (PLANTED, L.host_ip("h2"))}}}}}}, f)
    reports, state = L.state_path("sec-reports"), L.state_path("sec-state")
    try:
        L.wait_guest(g["ip"], disk=True)
        before = L.guest_status(g["ip"])
        p = L.playbook(os.path.join(PLAYBOOKS, "evacuate_host.yml"), args=["-i", inv], extra_vars={
            "source": "h1", "evacuate_host_destinations": ["h2"], "evacuate_host_domains": ["sec2"],
            "evacuate_host_report_dir": reports, "evacuate_host_state_dir": state,
            "evacuate_host_progress_interval_s": 1})
        assert p.returncode == 0, p.stdout[-5000:]
        assert where(lab, "sec2") == {"h2": "running"}
        integrity(before, L.guest_status(g["ip"]), "sec2")
        with open(os.path.join(reports, "h1", "report.json")) as f:
            report = json.load(f)
        assert [(r["name"], r["state"], r["transport"]) for r in report["results"]] == [("sec2", "migrated", "tls")]
        assert "invocation" not in report
        assert PLANTED not in p.stdout + p.stderr
        written = {}
        for top in (reports, state):
            for d, _dirs, files in os.walk(top):
                written[d] = os.stat(d).st_mode & 0o777
                for name in files:
                    path = os.path.join(d, name)
                    written[path] = os.stat(path).st_mode & 0o777
                    with open(path, "rb") as f:
                        assert PLANTED.encode() not in f.read(), "the planted password is in %s" % path
        files = dict((k, oct(v)) for k, v in written.items() if os.path.isfile(k))
        dirs = dict((k, oct(v)) for k, v in written.items() if os.path.isdir(k) and k not in (reports, state))
        figures["written_modes"] = {"files": sorted(set(files.values())), "dirs": sorted(set(dirs.values())),
                                    "files_scanned": len(files)}
        assert any(k.endswith("journal.jsonl") for k in files) and any(k.endswith("report.json") for k in files)
        assert set(files.values()) == {"0o600"}, files
        assert oct(written[state]) == "0o700" and set(dirs.values()) <= {"0o700"}, (written[state], dirs)
    finally:
        for h in ("h1", "h2"):
            L.virsh(h, "destroy", "sec2", check=False)
            L.virsh(h, "undefine", "sec2", check=False)


ROLE_DIR = "/etc/libvirt/pki-role"      # inside a lab host (its own /etc/libvirt)


def role_vars():
    """The tls role as the lab runs it: files under each host's own /etc/libvirt (the lab hosts share the
    machine's /etc/pki), the client side laid out as a libvirt pkipath, the CA in the lab's state, and no
    systemd (the lab restarts libvirtd itself)."""
    return {"targets": "h1:h2", "tls_ca_dir": L.state_path("tls-role-ca"), "tls_become": False,
            "tls_restart": False, "tls_qemu_cert_dir": ROLE_DIR + "/qemu",
            "tls_libvirt_ca_file": ROLE_DIR + "/cacert.pem", "tls_libvirt_cert_file": ROLE_DIR + "/servercert.pem",
            "tls_libvirt_key_file": ROLE_DIR + "/serverkey.pem",
            "tls_libvirt_client_cert_file": ROLE_DIR + "/clientcert.pem",
            "tls_libvirt_client_key_file": ROLE_DIR + "/clientkey.pem"}


def role_inventory():
    """h1 and h2 reached over libvirtd's TLS with the certificates the role made (an inventory added on top
    of the lab's)."""
    path = L.state_path("sec-role-inventory.json")
    with open(path, "w") as f:
        json.dump({"all": {"children": {"hypervisors": {"hosts": dict(
            (h, {"libvirt_migration_uri": "qemu+tls://%s/system?pkipath=%s" % (L.host_ip(h), ROLE_DIR)})
            for h in ("h1", "h2"))}}}}, f)
    return path


def restart_libvirtd(*hosts):
    """What the role's handler does through systemd on a real host."""
    for h in hosts:
        L.kill_libvirtd(h)
        L.restart_libvirtd(h)


def recap_changed(stdout):
    """{host: changed count} from a playbook's recap (the hypervisors: not localhost, where the playbook only
    checks its target)."""
    out = {}
    for line in stdout.split("PLAY RECAP")[-1].splitlines():
        if "changed=" in line and line.split(":")[0].strip() != "localhost":
            out[line.split(":")[0].strip()] = int(line.split("changed=")[1].split()[0])
    return out


def test_the_tls_role_sets_hosts_up_and_the_defaults_then_move_over_tls(lab, figures):
    """h1 and h2 with their TLS taken away: the default move is refused. The tls role sets them up (a CA
    made on the controller, community.crypto); a second run changes nothing; libvirtd restarted, the same
    default move runs over TLS, and the hosts read back as set up with the role's certificates."""
    saved = {}
    for h in ("h1", "h2"):
        for conf in ("qemu.conf", "libvirtd.conf"):
            path = L.state_path("hosts", h, "etc-libvirt", conf)
            with open(path) as f:
                saved[path] = f.read()
    g = L.define_guest("sec3", "h1", disk="nbd")
    playbook = os.path.join(PLAYBOOKS, "tls.yml")
    try:
        for path, text in saved.items():
            if path.endswith("qemu.conf"):
                with open(path, "w") as f:
                    f.write("".join(l for l in text.splitlines(True) if not l.startswith("migrate_tls_x509")))
        restart_libvirtd("h1", "h2")
        L.wait_guest(g["ip"], disk=True)
        before = L.guest_status(g["ip"])
        refused = move("sec3", "h1", "h2")
        assert refused.returncode != 0 and "is not set up for TLS migration" in refused.stdout, refused.stdout[-3000:]
        assert where(lab, "sec3") == {"h1": "running"}
        t0 = time.monotonic()
        first = L.playbook(playbook, extra_vars=role_vars())
        first_s = time.monotonic() - t0
        assert first.returncode == 0, first.stdout[-5000:]
        assert all(recap_changed(first.stdout).get(h, 0) > 0 for h in ("h1", "h2")), first.stdout[-2000:]
        again = L.playbook(playbook, extra_vars=role_vars())
        assert again.returncode == 0, again.stdout[-5000:]
        assert recap_changed(again.stdout) == {"h1": 0, "h2": 0}, again.stdout[-3000:]
        ca_key = os.path.join(role_vars()["tls_ca_dir"], "ca-key.pem")
        assert oct(os.stat(ca_key).st_mode & 0o777) == "0o600"
        restart_libvirtd("h1", "h2")
        moved = move("sec3", "h1", "h2", args=["-i", role_inventory()])
        assert moved.returncode == 0, moved.stdout[-4000:]
        assert "stream tls" in moved.stdout, moved.stdout[-3000:]
        assert where(lab, "sec3") == {"h2": "running"}
        integrity(before, L.guest_status(g["ip"]), "sec3")
        with open(L.state_path("hosts", "h2", "etc-libvirt", "qemu.conf")) as f:
            assert 'migrate_tls_x509_cert_dir = "%s/qemu"' % ROLE_DIR in f.read()
        figures["tls_role"] = {"first_run_s": round(first_s, 1), "changed_first": recap_changed(first.stdout),
                               "changed_second": recap_changed(again.stdout)}
    finally:
        for path, text in saved.items():
            with open(path, "w") as f:
                f.write(text)
        for h in ("h1", "h2"):
            L.virsh(h, "destroy", "sec3", check=False)
            L.virsh(h, "undefine", "sec3", check=False)
            shutil.rmtree(L.state_path("hosts", h, "etc-libvirt", "pki-role"), ignore_errors=True)
        restart_libvirtd("h1", "h2")


def test_the_tls_role_run_twice_from_two_fresh_containers_keeps_one_ca(lab):  # pylint: disable=unused-argument
    """AWX runs each job in a fresh container. Job 1 and job 2, each with an empty tls_ca_dir of its own and the CA
    given as PEM text (as the credential injects it): the second leaves the hosts' files as the first wrote them
    (same CA, certificates not issued again). Job 3, an empty tls_ca_dir and no CA: refused before anything
    changes, naming the hosts and how to give the CA."""
    confs = [L.state_path("hosts", h, "etc-libvirt", c) for h in ("h1", "h2") for c in ("qemu.conf", "libvirtd.conf")]
    saved = dict((p, open(p).read()) for p in confs)
    pki = dict((h, L.state_path("hosts", h, "etc-libvirt", "pki-role")) for h in ("h1", "h2"))
    key_path, cert_path = L.lab_ca()
    with open(cert_path) as c, open(key_path) as k:
        pem = {"tls_ca_cert_pem": c.read(), "tls_ca_key_pem": k.read()}
    playbook = os.path.join(PLAYBOOKS, "tls.yml")

    def job(n, **given):
        extra = dict(role_vars(), tls_ca_dir=L.state_path("tls-fresh-%d" % n), **given)
        shutil.rmtree(extra["tls_ca_dir"], ignore_errors=True)
        return L.runner(playbook, extra, "tls-fresh-%d" % n)

    def files():
        return dict((os.path.join(r, f), open(os.path.join(r, f), "rb").read())
                    for d in pki.values() for r, _s, fs in os.walk(d) for f in fs)
    for d in pki.values():
        shutil.rmtree(d, ignore_errors=True)      # (hosts that trust no CA there yet)
    try:
        first = job(1, **pem)
        assert first["status"] == "successful", first["stdout"][-5000:]
        written = files()
        for h in ("h1", "h2"):
            assert written[os.path.join(pki[h], "cacert.pem")].decode() == pem["tls_ca_cert_pem"].strip() + "\n"
        second = job(2, **pem)
        assert second["status"] == "successful", second["stdout"][-5000:]
        assert files() == written        # the same CA, the same certificates: nothing issued again
        third = job(3)
        said = " ".join(third["stdout"].split())
        assert third["status"] == "failed", third["stdout"][-5000:]
        for words in ("h1 trusts", "h2 trusts", "vmmlab lab CA", "tls_ca_cert_pem and tls_ca_key_pem", "tls_replace_ca"):
            assert words in said, third["stdout"][-5000:]
        assert files() == written and not os.path.exists(L.state_path("tls-fresh-3", "ca-key.pem"))
    finally:
        for path, text in saved.items():
            with open(path, "w") as f:
                f.write(text)
        for d in pki.values():
            shutil.rmtree(d, ignore_errors=True)
