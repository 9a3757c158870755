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
from moves import lifecycle_watch  # noqa: E402  pylint: disable=wrong-import-position

# The module's keepalive on its libvirt connections is 5 s x (3 + 1) = 20 s (connection.LibvirtClient): a freeze
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
            # (no recovered_from: our call got its reply before the freeze - the fault was not injected at all)
            assert result.get("recovered_from"), "the migrate call was not broken (its reply beat the freeze): %s" % msg
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
            # the start's reply was lost and the destination read back (else the freeze came too late: no fault)
            assert [s for s in result["steps"] if "the start call failed" in s["detail"]], \
                "the start was not broken (its reply beat the freeze): %s" % result["steps"]
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


# A second disk on the shared directory with the host's page cache: live migration is unsafe for it, so the drain
# can only move the guest cold (and copies its local disk, vda).
CACHED_DISK = """<disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='writeback'/>
      <source file='%s'/>
      <target dev='vdb' bus='virtio'/>
    </disk>"""


def test_drain_limit_runs_out_while_a_cold_move_copies(lab, figures):
    """The drain's time limit (timeout_s, 6 s) runs out while its first move - a cold one - copies 48 MiB to a
    destination reached at 3 MB/s (tc on the switch port). The copy is never cut: the drain keeps waiting for it
    past its limit, starts nothing more (the second VM is left 'not_started', still running at home), and returns
    once the move has ended: the guest runs on the destination only, on a copy whose data and disk records
    verify, and no image is left on the source. ('overran' is for a drain past its own bound - timeout_s plus the
    longest move's own deadlines plus 600 s - which this one never reaches, so the result has none.)"""
    name, other = "lost_drain", "lost_drain_b"
    playbook = os.path.join(L.TOP, "playbooks", "evacuate_host.yml")
    state, reports = L.state_path("evac-limit"), L.state_path("reports-limit")
    limit_s = 6
    # (only these two guests: whatever else runs on h1 is not this test's)
    extra = {"source": "h1", "evacuate_host_domains": [name, other], "evacuate_host_non_live_policy": "cold",
             "evacuate_host_destinations": ["h2"],
             "evacuate_host_max_outbound": 1, "evacuate_host_headroom_mib": 64, "evacuate_host_timeout_s": limit_s,
             "evacuate_host_state_dir": state, "evacuate_host_report_dir": reports,
             "evacuate_host_progress_interval_s": 1, "evacuate_host_allow_incomplete": True,
             "evacuate_host_cold_options": {"shutdown_timeout_s": 30}}
    for d in (state, reports):
        if os.path.isdir(d):
            import shutil  # pylint: disable=import-outside-toplevel
            shutil.rmtree(d)
    cached = L.state_path("shared", name + "-vdb.raw")
    L.run(["qemu-img", "create", "-q", "-f", "raw", cached, "4M"])
    shaped = False
    try:
        # the moved guest is the bigger one: the drain starts it first (longest first, by memory)
        g = L.define_guest(name, "h1", disk="local", memory_mib=192, start=False,
                           extra_devices=CACHED_DISK % os.path.join(L.MNT_SHARED, os.path.basename(cached)))
        L.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 8M 48M", g["image"]])
        L.virsh("h1", "start", name)
        b = L.define_guest(other, "h1", disk="nbd", memory_mib=96)
        L.wait_guest(b["ip"])
        L.wait_guest(g["ip"], disk=True)
        time.sleep(1)
        before = L.guest_status(g["ip"])
        L.run(L.ns_exec("sw", ["tc", "qdisc", "add", "dev", "h2", "root", "tbf", "rate", "24mbit", "burst", "32kb",
                               "latency", "400ms"]))
        shaped = True
        t0 = time.monotonic()
        out = {}

        def drain():
            try:
                out["p"] = L.playbook(playbook, extra_vars=extra)
            finally:
                out["end"] = time.monotonic()
        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        status_path = os.path.join(state, "evacuate.status.json")
        dest_image = os.path.join(L.state_path("hosts", "h2", "local"), name + ".qcow2")
        past_limit = []        # the drain's status once past its limit, while the copy was still going
        while thread.is_alive() and time.monotonic() - t0 < 300:
            try:
                with open(status_path) as f:
                    st = json.load(f)
            except (OSError, ValueError):
                st = {}
            copying = os.path.exists(dest_image) and not L.virsh("h2", "domstate", name, check=False).stdout.strip()
            if (st.get("elapsed_s") or 0) > limit_s and copying and [r for r in st.get("running") or []
                                                                     if r["name"] == name]:
                past_limit.append((st["elapsed_s"], st["state"], os.path.getsize(dest_image)))
            thread.join(0.5)
        assert not thread.is_alive(), "the drain did not return within 300 s"
        assert out["p"].returncode == 0, out["p"].stdout[-6000:]
        L.run(L.ns_exec("sw", ["tc", "qdisc", "del", "dev", "h2", "root"]))
        shaped = False
        with open(os.path.join(reports, "h1", "report.json")) as f:
            report = json.load(f)
        results = dict((r["name"], r) for r in report["results"])
        assert name in results, "the drain returned without the cold move's end (%s): %s" % (
            report.get("state"), report.get("left"))
        assert list(results) == [name], "a move started after the drain's limit: %s" % list(results)
        moved = results[name]
        assert moved["method"] == "cold" and moved["error"] is None and moved["state"] == "migrated", moved
        # the drain went on waiting for the copy past its limit, and ended only after the move had ended
        assert past_limit, "the drain was never seen waiting for the copy past its %d s limit" % limit_s
        assert all(s in ("running", "overrunning") for _e, s, _b in past_limit), past_limit
        assert moved["start_s"] < limit_s < moved["end_s"] <= report["wall_s"], (moved, report["wall_s"])
        assert "overran" not in report, report.get("overran")
        left = dict((x["name"], x) for x in report["left"])
        assert left[other]["action"] == "not_started" and "timeout_s reached" in left[other]["reason"], left
        assert report["state"] == "incomplete", report["state"]
        assert other in report["still_running_on_source"] and name not in report["still_running_on_source"]
        with open(os.path.join(reports, "h1", "journal.jsonl")) as f:
            events = [json.loads(line) for line in f]
        # (the live one may have been checked and planned ahead of the slot: then its journal ends it not started)
        assert [e["vm"] for e in events if e["event"] == "start"] in ([name], [name, other])
        ends = [(e["vm"], e["result"]["state"]) for e in events if e["event"] == "end"]
        assert ends in ([(name, "migrated")], [(name, "migrated"), (other, "not_started")],
                        [(other, "not_started"), (name, "migrated")]), ends
        # one guest, on the destination only; the other never left home
        deadline = time.monotonic() + 60
        while running(states(name, ["h1", "h2", "h3"])) != ["h2"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert states(name, ["h1", "h2", "h3"]) == {"h2": "running (booted)"}, states(name, ["h1", "h2", "h3"])
        assert states(other, ["h1", "h2", "h3"]) == {"h1": "running (booted)"}
        # nothing half-copied: the source image is gone, the destination's holds the data and every record
        assert not os.path.exists(g["image"]), "the source image was left on h1"
        check = L.run(["qemu-io", "-r", "-U", "-f", "qcow2", "-c", "read -P 0xab 8M 48M", dest_image], check=False)
        assert check.returncode == 0 and "Pattern verification failed" not in check.stdout, (check.stdout, check.stderr)
        after = L.wait_guest(g["ip"], timeout=60, disk=True)
        assert after["boot_id"] != before["boot_id"]
        assert after["disk_recovered"] >= before["disk_seq"] and after["disk_gaps"] == 0, (before, after)
        last, gaps = L.disk_records(dest_image, "qcow2")
        assert gaps == 0 and last >= before["disk_seq"], (last, gaps, before)
        figures["drain_limit_during_cold_copy"] = {
            "limit_s": limit_s, "move_start_s": moved["start_s"], "move_end_s": moved["end_s"],
            "drain_wall_s": report["wall_s"], "playbook_s": round(out["end"] - t0, 1),
            "seen_past_limit": len(past_limit), "last_seen_past_limit": past_limit[-1]}
    finally:
        if shaped:
            L.run(L.ns_exec("sw", ["tc", "qdisc", "del", "dev", "h2", "root"]), check=False)
        for n in (name, other):
            L.remove_guest(n)
        if os.path.exists(cached):
            os.unlink(cached)
