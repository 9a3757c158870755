"""Moving lab guests for the soak and the benchmarks: through the collection's migration engine
(the code the migrate module runs, in this process, connected to each host's libvirtd over its unix
socket) or through plain `virsh migrate`; and what a guest looked like before and after a move.

Both arms are timed the same way: from the call to the guest running on the destination (virsh
returns once the destination runs the guest; so does the engine).
"""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position


def tls_uri(host):
    """The destination URI a careful operator uses: libvirtd over TLS with the host's lab certificates."""
    return L.tls_uri(host)


def engine():
    """ours(name, src, dst, **options) -> the engine's result, plus wall_s; never raises for a failed
    move (the result then has 'error'). The stream is encrypted unless the options say otherwise (tls:
    required here - the lab hosts are all set up for TLS - as tls: auto finds them through the module;
    this process cannot read the hosts' files, so libvirt checks them); the connection to the destination's
    libvirtd is TLS too, unless tls_uri=False."""
    sys.path.insert(0, L.collections_path())
    # pylint: disable=import-outside-toplevel
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import (
        LibvirtClient, LibvirtClientError, start_event_loop)
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import live as M
    start_event_loop()
    defaults = M.option_defaults(M.migration_argspec())

    def ours(name, src, dst, **kw):
        kw.setdefault("dest_uri", tls_uri(dst) if kw.pop("tls_uri", True) else L.tcp_uri(dst))
        kw.setdefault("tls", "required")
        opts = dict(defaults, **kw)
        problems = M.validate(opts)
        if problems:
            raise ValueError("; ".join(problems))
        t0 = time.monotonic()
        src_c, dst_c = LibvirtClient(L.uri(src)), LibvirtClient(L.uri(dst))
        try:
            r = M.LiveMigration(src_c, dst_c, name, opts, hosts_security={"source": None, "dest": None}).run()
        except LibvirtClientError as e:       # MigrationError and every other failure of the engine
            r = dict(getattr(e, "result", None) or {}, error=e.msg)
        finally:
            src_c.close()
            dst_c.close()
        r["wall_s"] = time.monotonic() - t0
        return r
    return ours


def virsh_move(name, src, dst, flags=(), timeout=None, tls=True):
    """Plain `virsh migrate --live --p2p --persistent --undefinesource` plus FLAGS, with --tls like ours
    by default (a careful operator encrypts the guest's memory); on TIMEOUT the job is aborted (the guest
    stays on the source). -> {'wall_s', 'finished', 'error'}"""
    cmd = ["virsh", "-c", L.uri(src), "migrate", "--live", "--p2p", "--persistent", "--undefinesource"]
    cmd += ["--tls"] if tls else []
    cmd += list(flags) + [name, tls_uri(dst) if tls else L.tcp_uri(dst)]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _out, err = p.communicate(timeout=timeout)
        finished = p.returncode == 0
    except subprocess.TimeoutExpired:
        L.virsh(src, "domjobabort", name, check=False)
        _out, err = p.communicate(timeout=120)
        finished, err = False, "aborted after %s s" % timeout
    return {"wall_s": time.monotonic() - t0, "finished": finished, "error": None if finished else err.strip()}


class SwitchRecorder:
    """Where a switch-over's blackout goes, from libvirt's lifecycle events of NAME on SRC and DST (watched
    from this process over the unix sockets, each stamped on arrival with CLOCK_MONOTONIC, the probe's clock)
    and the client's replies (a vmmlab.Blackout with times=True):
      - stop_to_resume_ms: the source paused the guest -> the destination resumed it (the pause as the two
        libvirtds saw it: QEMU's switch-over plus libvirt's hand-over to the destination);
      - resume_to_reply_ms: the destination resumed the guest -> the client's first reply after that (the
        network learning the guest's new port, and the guest answering);
      - before_stop_ms: the client's last reply before the pause -> the pause (at most one ping interval).
    Their sum is the client's gap around the switch-over."""

    def __init__(self, name, src, dst):
        self.name, self.events = name, []
        self.conns = []
        for side, host in (("src", src), ("dst", dst)):
            conn, self.lib = lifecycle_watch(host, name, lambda e, d, side=side: self.events.append(
                (time.monotonic(), side, e, d)))
            self.conns.append(conn)

    def close(self):
        for c in self.conns:
            try:
                c.close()
            except Exception:  # pylint: disable=broad-except
                pass

    def split(self, reply_times):
        lib = self.lib
        stops = [t for t, side, e, _d in self.events if side == "src" and e == lib.VIR_DOMAIN_EVENT_SUSPENDED]
        resumes = [t for t, side, e, _d in self.events if side == "dst" and e == lib.VIR_DOMAIN_EVENT_RESUMED]
        if not stops or not resumes or not reply_times:
            return {}
        stop = stops[-1]
        resume = min([t for t in resumes if t >= stop] or [resumes[-1]])
        before = [r for r in reply_times if r <= stop]
        after = [r for r in reply_times if r > resume]
        out = {"stop_to_resume_ms": round(1000 * (resume - stop), 1)}
        if after:
            out["resume_to_reply_ms"] = round(1000 * (after[0] - resume), 1)
        if before:
            out["before_stop_ms"] = round(1000 * (stop - before[-1]), 1)
        if before and after:
            out["switch_gap_ms"] = round(1000 * (after[0] - before[-1]), 1)
        return out


def lifecycle_watch(host, name, on_event):
    """Call ON_EVENT(event, detail) from libvirt's event thread for each lifecycle event of NAME on HOST (over
    its unix socket, from this process). Returns the connection (close it to stop) and the libvirt module."""
    sys.path.insert(0, L.collections_path())
    import libvirt  # pylint: disable=import-outside-toplevel
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import start_event_loop  # pylint: disable=import-outside-toplevel
    start_event_loop()
    conn = libvirt.open(L.uri(host))

    def callback(_conn, dom, event, detail, _opaque):
        if dom.name() == name:
            on_event(event, detail)
    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, callback, None)
    return conn, libvirt


def where(name, hosts):
    """{host: state} for every host that knows the domain."""
    out = {}
    for h in hosts:
        p = L.virsh(h, "domstate", name, check=False)
        if p.returncode == 0:
            out[h] = p.stdout.strip()
    return out


def settled_place(name, hosts, expected, timeout=30.0):
    """where(NAME) once it is EXPECTED, or as it is after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        state = where(name, hosts)
        if state == expected or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def damage(before, after):
    """What a move did to a guest, as counts: {'bad_words', 'dead', 'rebooted', 'disk_gaps'} (all 0:
    intact). BEFORE and AFTER are the guest's status (None: it did not answer)."""
    if after is None:
        return {"bad_words": 0, "dead": 1, "rebooted": 0, "disk_gaps": 0}
    return {"bad_words": max(0, after.get("mem_bad_words", 0) - before.get("mem_bad_words", 0)),
            "dead": 0,
            "rebooted": int(after.get("boot_id") != before.get("boot_id")),
            "disk_gaps": max(0, after.get("disk_gaps", 0) - before.get("disk_gaps", 0))}


def settled_status(ip, timeout=10.0):
    """The guest's status once it answers after a move (None if it does not within TIMEOUT)."""
    deadline = time.monotonic() + timeout
    while True:
        st = L.guest_status(ip)
        if st is not None or time.monotonic() > deadline:
            return st
        time.sleep(0.2)


def concurrently(*calls):
    """Run the zero-argument CALLS at once; their results in order."""
    out = [None] * len(calls)

    def work(i, fn):
        out[i] = fn()
    threads = [threading.Thread(target=work, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    return out
