"""Lost replies and hung daemons, with real libvirtd and QEMU (issue 21, item 6).

The unit sweep fakes these; here each is made real and what our module returns is checked against what both
hosts' libvirtd say (virsh domstate) and against the guest itself:

- a live migration whose effect happened - the destination runs the guest - while the source libvirtd is frozen
  (SIGSTOP) past the module's keepalive, so that our migrate call's reply is lost;
- a cold move whose destination libvirtd is frozen while it starts the guest there;
- a drain whose time limit (timeout_s) runs out while a cold move copies a disk.

In each the guest must end running on exactly one host, never two at once, and the result must say the truth:
the move, or state 'unknown' with 'do not start it on either host'. Only lab daemons are frozen, by the PID in
the lab's pid files, and always let go again (SIGCONT) in a finally.
"""
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position
from test_integration import TARGETS  # noqa: E402  pylint: disable=wrong-import-position
from test_migrate import integrity  # noqa: E402  pylint: disable=wrong-import-position

# The module's keepalive on its libvirt connections is 5 s x (3 + 1) = 20 s (_client.LibvirtClient): a freeze
# held longer than that loses the reply of any call in flight.
KEEPALIVE_S = 20
HOLD_S = KEEPALIVE_S + 5
UNKNOWN_SAID = "do not start it on either host"


def libvirtd_pid(host):
    """HOST's libvirtd PID from the lab's pid file (checked to be a libvirtd)."""
    pid = L._read_pid(L.state_path("hosts", host, "run-libvirt", "vmmlab-libvirtd.pid"))  # pylint: disable=protected-access
    assert pid and L._comm(pid) == "libvirtd", "no lab libvirtd on %s (pid %s)" % (host, pid)  # pylint: disable=protected-access
    return pid


class Freeze:
    """SIGSTOP one lab libvirtd now; thaw() (SIGCONT) it, once, whatever happened (also from a finally)."""

    def __init__(self, host):
        self.host, self.pid = host, libvirtd_pid(host)
        os.kill(self.pid, signal.SIGSTOP)
        self.at, self.thawed_at = time.monotonic(), None

    def thaw(self):
        if self.thawed_at is None:
            os.kill(self.pid, signal.SIGCONT)
            self.thawed_at = time.monotonic()

    def held_s(self):
        return (self.thawed_at or time.monotonic()) - self.at


def states(name, hosts):
    """{host: 'state (reason)'} for each of HOSTS that knows the domain (hosts whose libvirtd is not frozen)."""
    out = {}
    for h in hosts:
        p = L.virsh(h, "domstate", "--reason", name, check=False, timeout=60)
        if p.returncode == 0:
            out[h] = p.stdout.strip()
    return out


def running(found):
    return sorted(h for h, s in found.items() if s.startswith("running"))


def clear_files(name):
    for f in ("status", "result"):
        path = L.state_path("%s-%s.json" % (f, name))
        if os.path.exists(path):
            os.unlink(path)


def read_result(name):
    with open(L.state_path("result-%s.json" % name)) as f:
        return json.load(f)


def in_background(extra_vars):
    """The lab target playbook in a thread: (thread, out) - out gets 'p' (the run) and 'end' (when it ended)."""
    out = {}

    def run():
        try:
            out["p"] = L.playbook(os.path.join(TARGETS, "lab_target.yml"), extra_vars=extra_vars)
        finally:
            out["end"] = time.monotonic()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def watch_until_done(thread, name, hosts, seen, timeout=300):
    """While THREAD (the module) runs, look at NAME on HOSTS every half second: never on two hosts at once."""
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline:
        now = states(name, hosts)
        seen.append(now)
        assert len(running(now)) <= 1, "the guest runs on two hosts at once: %s" % now
        thread.join(0.5)
    assert not thread.is_alive(), "the module did not return within %d s" % timeout


def lifecycle_watch(host, name, on_event):
    """Call ON_EVENT(event, detail) from libvirt's event thread for each lifecycle event of NAME on HOST (over
    its unix socket, from this process). Returns the connection (close it to stop)."""
    sys.path.insert(0, L.collections_path())
    import libvirt  # pylint: disable=import-outside-toplevel
    from ansible_collections.vmmigration.libvirt.plugins.module_utils._client import start_event_loop  # pylint: disable=import-outside-toplevel
    start_event_loop()
    conn = libvirt.open(L.uri(host))

    def callback(_conn, dom, event, detail, _opaque):
        if dom.name() == name:
            on_event(event, detail)
    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, callback, None)
    return conn, libvirt


def test_reply_lost_after_the_destination_resumed_the_guest(lab, figures):
    """Live: the source libvirtd is frozen the moment the destination resumes the guest (its lifecycle event), so
    the migration has happened but our migrate call cannot get its reply; it stays frozen past the keepalive,
    then is let go. The guest must run on the destination only - the source never resumed - and the result must
    report the move (saying what it could not check or clean on the source) or 'unknown'."""
    name = "lost_live"
    g = L.define_guest(name, "h1", disk="nbd", mem_workload_mib=16, mem_rate=4)
    clear_files(name)
    freeze, seen, t0 = {}, [], time.monotonic()
    conn = None
    try:
        L.wait_guest(g["ip"], disk=True)
        time.sleep(1)
        before = L.guest_status(g["ip"])
        src_pid = libvirtd_pid("h1")

        def on_event(event, _detail):
            if event == lib.VIR_DOMAIN_EVENT_RESUMED and "f" not in freeze:
                freeze["f"] = Freeze("h1")
        conn, lib = lifecycle_watch("h2", name, on_event)
        thread, out = in_background({"target": "migrate_fault", "target_hosts": "h1", "mig_domain": name,
                                     "mig_dest": "h2", "mig_bandwidth": 32})
        try:
            while "f" not in freeze and thread.is_alive() and time.monotonic() - t0 < 180:
                time.sleep(0.02)
            assert "f" in freeze, "the destination never resumed the guest: %s" % (
                out.get("p") and out["p"].stdout[-3000:])
            f = freeze["f"]
            assert f.pid == src_pid
            at_freeze = states(name, ["h2"])
            # the migration's effect happened: the destination runs the guest (the source cannot be asked)
            assert at_freeze == {"h2": "running (migrated)"}, at_freeze
            while f.held_s() < HOLD_S:
                seen.append(states(name, ["h2"]))
                thread.join(0.5)
            returned_while_frozen = not thread.is_alive()
        finally:
            if "f" in freeze:
                freeze["f"].thaw()
        watch_until_done(thread, name, ["h1", "h2"], seen)
        assert out["p"].returncode == 0, out["p"].stdout[-4000:]
        result = read_result(name)
        final = states(name, ["h1", "h2"])
        after = L.guest_status(g["ip"])
        # the source was never resumed: the guest ran on h2 only, from the freeze to the end
        assert all(running(s) in ([], ["h2"]) for s in seen), seen
        assert running(final) == ["h2"], final
        assert final.get("h1", "").split(" ")[0] in ("", "shut", "paused"), final
        integrity(before, after, name)
        msg = result.get("msg") or ""
        if result["state"] == "unknown":
            assert result["failed"] and UNKNOWN_SAID in msg, msg
        else:
            # the move, never a rollback: the destination has the guest
            assert result["state"] == "migrated" and result["changed"], (result["state"], msg)
            assert result.get("recovered_from"), result
            if result.get("failed"):
                assert result.get("source_cleanup_failed") and "it runs on the destination" in msg, msg
        figures["lost_reply_live"] = {
            "frozen_at_s": round(f.at - t0, 1), "held_s": round(f.held_s(), 1),
            "returned_while_frozen": returned_while_frozen,
            "module_returned_after_thaw_s": round(out["end"] - f.thawed_at, 1),
            "state": result["state"], "failed": bool(result.get("failed")), "msg": msg[:300],
            "decisions": [(d["t"], d["action"]) for d in result.get("decisions") or []][-4:],
            "virsh": final}
    finally:
        for fr in freeze.values():
            fr.thaw()
        if conn is not None:
            conn.close()
        L.remove_guest(name)


def test_destination_libvirtd_hung_while_the_cold_move_starts_the_guest(lab, figures):
    """Cold: the destination libvirtd is frozen while it starts the guest (its QEMU is launched - the pid file is
    there - but the start has not returned), past the keepalive, then let go. The source must not be started
    again while the destination cannot say whether it runs the guest; the guest never runs on two hosts; the
    result says the move, a rollback matching what both hosts show, or 'unknown' with 'do not start it on either
    host'."""
    name = "lost_cold"
    g = L.define_guest(name, "h1", disk="nbd")
    clear_files(name)
    pid_file = L.state_path("hosts", "h2", "run-libvirt", "qemu", name + ".pid")
    freeze, seen, t0 = {}, [], time.monotonic()
    try:
        L.wait_guest(g["ip"], disk=True)
        time.sleep(1)
        before = L.guest_status(g["ip"])
        thread, out = in_background({"target": "cold_migrate", "target_hosts": "h1", "cold_domain": name,
                                     "cold_dest": "h2", "cold_expect_copy": [], "cold_expect_shutdown": True,
                                     "cold_fault": True})
        try:
            while thread.is_alive() and time.monotonic() - t0 < 240:
                if L._read_pid(pid_file):  # pylint: disable=protected-access
                    freeze["f"] = Freeze("h2")
                    break
                time.sleep(0.005)
            assert "f" in freeze, "the destination never started the guest: %s" % (
                out.get("p") and out["p"].stdout[-3000:])
            f = freeze["f"]
            # while the destination cannot answer, the source is never started again
            while f.held_s() < HOLD_S:
                now = states(name, ["h1"])
                seen.append(now)
                assert not running(now), "the source was started again while the destination hung: %s" % now
                thread.join(0.5)
            returned_while_frozen = not thread.is_alive()
        finally:
            if "f" in freeze:
                freeze["f"].thaw()
        watch_until_done(thread, name, ["h1", "h2"], seen)
        assert out["p"].returncode == 0, out["p"].stdout[-4000:]
        result = read_result(name)
        # libvirtd, let go, finishes what it was doing: give it the time to settle
        deadline = time.monotonic() + 30
        final = states(name, ["h1", "h2"])
        while not running(final) and time.monotonic() < deadline:
            time.sleep(0.5)
            final = states(name, ["h1", "h2"])
        assert len(running(final)) == 1, "the guest runs on %s: %s" % (running(final) or "no host", final)
        msg = result.get("msg") or ""
        if result["state"] == "unknown":
            assert result["failed"] and UNKNOWN_SAID in msg and "not started again on the source" in msg, msg
            # the source kept its definition and was not restarted: whatever runs, runs on the destination
            assert running(final) == ["h2"] and final.get("h1", "").startswith("shut off"), final
        elif result["state"] == "migrated":
            assert not result.get("failed") or result.get("source_cleanup_failed"), msg
            assert running(final) == ["h2"] and "h1" not in final, final
        else:
            assert result["state"] == "rolled_back" and result["failed"], (result["state"], msg)
            assert running(final) == ["h1"] and "h2" not in final, final
        after = L.wait_guest(g["ip"], timeout=60, disk=True)
        # shut down, then booted once where it runs now: no write of the old boot lost
        assert after["boot_id"] != before["boot_id"]
        assert after["disk_recovered"] >= before["disk_seq"] and after["disk_gaps"] == 0, (before, after)
        figures["lost_cold_start"] = {
            "frozen_at_s": round(f.at - t0, 1), "held_s": round(f.held_s(), 1),
            "returned_while_frozen": returned_while_frozen,
            "module_returned_after_thaw_s": round(out["end"] - f.thawed_at, 1),
            "state": result["state"], "msg": msg[:300],
            "steps": [(s["t"], s["action"]) for s in result.get("steps") or []],
            "virsh": final}
    finally:
        for fr in freeze.values():
            fr.thaw()
        L.remove_guest(name)
