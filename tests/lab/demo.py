"""The main job, lab edition: bring the lab up, boot a busy guest on h1, live-migrate it to h2 while
a client namespace pings it at 100 Hz and reads its workload counters, print what the client saw,
and tear the lab down (always)."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position


def main():
    if L.load_state():
        print("a lab is already up; run 'tests/lab/lab down' first", file=sys.stderr)
        return 1
    try:
        st = L.up(3)
        t0 = time.monotonic()
        g = L.define_guest("demo1", "h1", memory_mib=256, mem_workload_mib=32, mem_rate=16, disk="nbd",
                           disk_ms=50)
        before = L.wait_guest(g["ip"], timeout=60)
        boot = time.monotonic() - t0
        time.sleep(1)
        with L.Blackout(g["ip"], hz=100) as probe:
            t1 = time.monotonic()
            L.run(["virsh", "-c", L.uri("h1"), "migrate", "--live", "--p2p", "--persistent",
                   "--undefinesource", "demo1", L.tcp_uri("h2")], timeout=300)
            wall = time.monotonic() - t1
        job = L.virsh("h2", "domjobinfo", "--completed", "demo1").stdout
        time.sleep(1)
        after = L.guest_status(g["ip"])
        fig = {line.split(":")[0].strip(): line.split(":", 1)[1].strip() for line in job.splitlines()
               if ":" in line}
        r = probe.result
        print()
        print("live migration of demo1 (256 MiB, 32 MiB memory writer, NBD disk) h1 -> h2")
        print("  lab up                 %6.1f s" % st["up_seconds"])
        print("  guest boot to answer   %6.1f s" % boot)
        print("  migration wall time    %6.2f s" % wall)
        print("  libvirt downtime       %6s ms" % fig.get("Total downtime", "?").split()[0])
        print("  data moved             %s" % fig.get("Data processed", "?"))
        print("what the client saw (ICMP at %d Hz from the client namespace):" % r["hz"])
        print("  sent %d, answered %d, lost %d; longest gap %.0f ms at +%.2f s" % (
            r["sent"], r["received"], r["lost"], r["max_gap_ms"], r["max_gap_at_s"] or 0))
        where = L.virsh("h2", "domstate", "demo1", check=False).stdout.strip()
        print("  guest now on           %s" % ("h2" if where == "running" else "?"))
        if after:
            print("  same boot              %s" % (after["boot_id"] == before["boot_id"]))
            print("  disk counter           %d -> %d, gaps %d" % (
                before["disk_seq"], after["disk_seq"], after["disk_gaps"]))
            print("  memory verifier        %d -> %d passes, bad words %d" % (
                before["mem_passes"], after["mem_passes"], after["mem_bad_words"]))
        else:
            print("  the guest did not answer after the migration")
        print(json.dumps({"wall_s": round(wall, 2), "probe": r, "before": before, "after": after}))
        ok = after is not None and after["mem_bad_words"] == 0 and after["disk_gaps"] == 0
        return 0 if ok else 1
    finally:
        L.down()


if __name__ == "__main__":
    sys.exit(main())
