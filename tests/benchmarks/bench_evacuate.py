"""Benchmark: draining a hypervisor of 8 guests (issue 6). Prints figures and ratios; asserts nothing.

  - the link rate between two lab hypervisors, measured (a TCP stream h1 -> h2, 512 MiB)
  - the drain with the evacuate_host playbook (the drain's own wall time and the playbook's, and what
    the plan predicted)
  - the same 8 guests moved back and then out again by a serial loop of plain `virsh migrate --live`
    to the destinations the drain chose
  - the lower bound: the bytes the drain moved / the measured link rate (with a cap: / 2 x the cap)
  - twice: with no cap, and with every migration capped at 16 MiB/s, where the link would sit idle
    under one move at a time: there parallel moves must win
  - with a cap, where the drain's wall went: before the first move, each move's checks, its bytes at the cap (the
    bound), the rest of each migration call, the slot time after it, idle slots, and after the last move
Runs are interleaved (drain, virsh, drain, virsh ...); every guest's integrity is read after every
move, and any damage fails the benchmark (exit 1).
Run as root: .venv/bin/python tests/benchmarks/bench_evacuate.py  (brings its own lab up and down)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lab"))
import moves  # noqa: E402  pylint: disable=wrong-import-position
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

GUESTS = 8
CAP = 16          # MiB/s per migration in the capped scenario
STREAM_MIB = 512
SERVER = ("import socket, sys, time\n"
          "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
          "s.bind((sys.argv[1], 5999)); s.listen(1); print('ready', flush=True)\n"
          "c, _ = s.accept(); n = 0; t0 = time.monotonic()\n"
          "while True:\n"
          "    b = c.recv(1 << 20)\n"
          "    if not b: break\n"
          "    n += len(b)\n"
          "print(n, time.monotonic() - t0, flush=True)\n")
CLIENT = ("import socket, sys\n"
          "c = socket.create_connection((sys.argv[1], 5999)); buf = b'x' * (1 << 20)\n"
          "for _ in range(int(sys.argv[2])): c.sendall(buf)\n"
          "c.close()\n")


def link_rate():
    """MiB/s of one TCP stream from h1 to h2 (the path a migration takes)."""
    server = subprocess.Popen(L.ns_exec("h2", [sys.executable, "-c", SERVER, L.host_ip("h2")]),
                              stdout=subprocess.PIPE, text=True)
    try:
        server.stdout.readline()
        L.run(L.ns_exec("h1", [sys.executable, "-c", CLIENT, L.host_ip("h2"), str(STREAM_MIB)]), timeout=120)
        n, secs = server.stdout.readline().split()
        return int(n) / 1048576.0 / float(secs)
    finally:
        server.wait(30)


def virsh_serial(placements, src_of, cap=None, check=None):
    """Plain virsh, one move at a time, to the destinations the drain chose; CHECK(name) after each."""
    # what a careful operator gives virsh for guests that write memory: --auto-converge (the drain
    # may use it too), and the drain's per-migration cap
    flags = ["--auto-converge"] + (["--bandwidth", str(cap)] if cap else [])
    t0 = time.monotonic()
    for name, dst in placements:
        r = moves.virsh_move(name, src_of(name), dst, flags, timeout=300)
        if not r["finished"]:
            raise RuntimeError("virsh could not move %s: %s" % (name, r["error"]))
        L.set_guest_host(name, dst)
        if check:
            check(name)
    return time.monotonic() - t0


class Guests:
    """The benchmark's guests, with an integrity read after every move."""

    def __init__(self, names):
        self.names = names
        self.before = {}
        self.damage = []

    def snapshot(self):
        for n in self.names:
            self.before[n] = L.guest_status(L.load_state()["guests"][n]["ip"])

    def check(self, name):
        g = L.load_state()["guests"][name]
        d = moves.damage(self.before[name], moves.settled_status(g["ip"]))
        place = moves.where(name, L.load_state()["hosts"])
        if any(d.values()) or place != {g["host"]: "running"}:
            self.damage.append("%s: %s, found %s\n%s" % (name, d, place, L.console_log(name)))

    def check_all(self):
        for n in self.names:
            self.check(n)


def drain(guests, rate, cap, label):
    """One drain of h1 with the evacuate_host playbook: (report, playbook wall)."""
    reports = L.state_path("bench-reports-%s" % label)
    options = {}
    if cap:
        options["bandwidth_mibps"] = cap
    extra = {"source": "h1", "evacuate_host_max_outbound": 2, "evacuate_host_max_inbound": 1,
             "evacuate_host_headroom_mib": 64, "evacuate_host_state_dir": L.state_path("bench-evac-%s" % label),
             "evacuate_host_report_dir": reports, "evacuate_host_rate_mibps": int(cap or rate),
             "evacuate_host_migrate_options": options}
    # what earlier drains of this scenario measured: the plan's prediction is calibrated from it (the role reads
    # and updates reports/calibration.json), and the role's own cost beyond the drain predicts the playbook's wall
    try:
        with open(os.path.join(reports, "calibration.json")) as f:
            cal = json.load(f)
    except OSError:
        cal = {}
    guests.snapshot()
    t0 = time.monotonic()
    p = L.playbook(os.path.join(L.TOP, "playbooks", "evacuate_host.yml"), extra_vars=extra)
    playbook_s = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError("the drain failed:\n" + p.stdout[-5000:])
    with open(os.path.join(reports, "h1", "report.json")) as f:
        report = json.load(f)
    for r in report["results"]:
        L.set_guest_host(r["name"], r["destination"])
    guests.check_all()
    report["calibration_before"] = {"calibrated": bool(cal.get("samples")),
                                    "role_overhead_s": cal.get("role_overhead_s") or 0.0}
    return report, playbook_s


SPLIT = (("before_first_move_s", "before the first slot was taken (the drain's own checks)"),
         ("setup_s", "each move's checks and plan, in its slot (a move prepared ahead: the part after its slot came)"),
         ("transfer_s", "the bytes at the cap (the bound)"),
         ("migration_beyond_s", "each migration beyond its bytes at the cap"),
         ("in_slot_other_s", "in its slot besides (connecting, commit)"),
         ("slots_idle_s", "a slot idle (no move to start)"),
         ("after_last_s", "after the last slot was given back"))


def split(report, cap, slots=2):
    """Where the drain's wall went. Each move holds one of SLOTS outbound slots from slot_s (its start, or later for a
    move checked and planned ahead while others migrated) until it runs on its destination (moved_s; its announce
    and verification go on outside the slot): what of its checks and plan came after slot_s, the migration
    call (its bytes at CAP, and the rest: the destination's QEMU starting, passes beyond one copy, the switch-over),
    and the rest of its slot time (its connections opened, the commit; all of it for a move that failed before its
    engine ran). Slot-seconds are divided by SLOTS, so the parts add up to the wall: before the first move + (the
    moves' slot time + the slots' idle time) / SLOTS + after the last slot is given back."""
    res = [r for r in report["results"] if r.get("start_s") is not None and r.get("end_s") is not None]
    if not res or not cap:
        return None
    slot = dict((r["name"], r["slot_s"] if r.get("slot_s") is not None else r["start_s"]) for r in res)
    held = [((r.get("moved_s") if r.get("moved_s") is not None else r["end_s"]) - slot[r["name"]]) for r in res]
    first = min(slot.values())
    release = max(slot[r["name"]] + h for r, h in zip(res, held))
    out = dict((k, 0.0) for k, _label in SPLIT)
    for r, h in zip(res, held):
        ph = r.get("phases") or {}
        # (prepared ahead: only what of the checks and plan came after the slot was given counts in it)
        pre = max(0.0, sum(float(ph.get(k) or 0) for k in ("checks_s", "dirty_rate_wait_s", "planning_s"))
                  - (slot[r["name"]] - r["start_s"]))
        call = float(ph.get("migration_s") or 0)
        # (the bytes of a live migration call; a cold move's copy has no such call)
        ideal = (r.get("bytes_transferred") or 0) / 1048576.0 / cap if call else 0.0
        out["setup_s"] += pre / slots
        out["transfer_s"] += ideal / slots
        out["migration_beyond_s"] += (call - ideal) / slots
        out["in_slot_other_s"] += (h - pre - call) / slots
    out["before_first_move_s"] = first
    out["slots_idle_s"] = (slots * (release - first) - sum(held)) / slots
    out["after_last_s"] = float(report["wall_s"]) - release
    return dict((k, round(v, 2)) for k, v in out.items())


def spread(values):
    return "%.1f (%.1f-%.1f)" % (statistics.median(values), min(values), max(values))


def scenario(guests, rate, cap, runs):
    """RUNS interleaved rounds: the drain, then (after moving every guest home, untimed) the same moves
    with a serial virsh loop given the same cap, then home again."""
    rows = {"drain": [], "playbook": [], "virsh": [], "bound": [], "predicted": [], "predictions": [], "split": []}
    for _i in range(runs):
        report, playbook_s = drain(guests, rate, cap, "cap%s" % cap)
        placements = [(r["name"], r["destination"]) for r in report["results"]]
        moved = sum(r.get("bytes_transferred") or 0 for r in report["results"]) / 1048576.0
        # the bound: every byte the drain moved through the h1 link, at the link rate or, with a cap,
        # at the cap times the drain's outbound concurrency (2)
        rows["bound"].append(moved / (min(rate, 2 * cap) if cap else rate))
        rows["drain"].append(report["wall_s"])
        rows["split"].append(split(report, cap))
        rows["playbook"].append(playbook_s)
        rows["predicted"].append(report["plan"]["predicted_total_s"] or 0)
        before = report["calibration_before"]
        rows["predictions"].append({
            "calibrated": before["calibrated"], "drain_predicted_s": report["plan"]["predicted_total_s"] or 0,
            "drain_s": report["wall_s"],
            "playbook_predicted_s": (report["plan"]["predicted_total_s"] or 0) + before["role_overhead_s"],
            "playbook_s": round(playbook_s, 2)})
        guests.snapshot()
        virsh_serial([(n, "h1") for n, _d in placements], lambda n, p=dict(placements): p[n], check=guests.check)
        guests.snapshot()
        rows["virsh"].append(virsh_serial(placements, lambda n: "h1", cap, check=guests.check))
        guests.snapshot()
        virsh_serial([(n, "h1") for n, _d in placements], lambda n, p=dict(placements): p[n], check=guests.check)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5, help="interleaved runs per scenario")
    ap.add_argument("--capped-only", action="store_true", help="only the scenario with every migration capped")
    a = ap.parse_args(argv)
    own_lab = not L.load_state()
    if own_lab:
        L.up(3)
    names = ["bench_ev%d" % i for i in range(GUESTS)]
    guests = Guests(names)
    try:
        rate = link_rate()
        for i, name in enumerate(names):
            # two guests rewrite memory, the rest are idle; all on shared NBD disks
            L.define_guest(name, "h1", disk="nbd", memory_mib=128,
                           mem_workload_mib=32 if i < 2 else 0, mem_rate=16 if i < 2 else 0)
        for name in names:
            L.wait_guest(L.load_state()["guests"][name]["ip"], disk=True)
        print()
        print("drain of %d guests (128 MiB each, 2 rewriting 32 MiB at 16 MiB/s), 2 out of h1 at once, 1 into "
              "each destination at once; %d interleaved runs per scenario" % (GUESTS, a.runs))
        print("measured link rate h1 -> h2 (one TCP stream): %.0f MiB/s" % rate)
        out = {"link_mibps": round(rate)}
        for cap in ((CAP,) if a.capped_only else (None, CAP)):
            rows = scenario(guests, rate, cap, a.runs)
            bound = statistics.median(rows["bound"])
            print("\n%s" % ("no bandwidth cap" if not cap else
                            "every migration capped at %d MiB/s (the link is faster: parallel moves must win)" % cap))
            print("%-46s %20s %10s" % ("run", "wall s med (min-max)", "x bound"))
            for label, key in (("lower bound (bytes moved / rate)", "bound"),
                               ("drain predicted by the plan", "predicted"),
                               ("evacuate: the drain itself", "drain"),
                               ("evacuate_host playbook (plan, drain, report)", "playbook"),
                               ("serial virsh migrate --live --auto-converge%s" % (
                                   " --bandwidth %d" % cap if cap else ""),
                                "virsh")):
                print("%-46s %20s %10.1f" % (label, spread(rows[key]), statistics.median(rows[key]) / bound))
            print("predicted against actual, run by run (the first run of a scenario from the configured rate; each "
                  "later one calibrated from the drains before it):")
            for i, x in enumerate(rows["predictions"]):
                print("  run %d %-12s drain %5.1f s predicted for %5.1f s (%3.0f %% off); playbook %5.1f s for %5.1f s "
                      "(%3.0f %% off)" % (
                          i + 1, "calibrated" if x["calibrated"] else "configured", x["drain_predicted_s"], x["drain_s"],
                          100 * abs(x["drain_predicted_s"] - x["drain_s"]) / x["drain_s"], x["playbook_predicted_s"],
                          x["playbook_s"], 100 * abs(x["playbook_predicted_s"] - x["playbook_s"]) / x["playbook_s"]))
            cal_err = [abs(x["drain_predicted_s"] - x["drain_s"]) / x["drain_s"] for x in rows["predictions"]
                       if x["calibrated"]]
            if cal_err:
                print("  median error once calibrated: drain %.0f %%" % (100 * statistics.median(cal_err)))
            rows.pop("predictions")
            splits = [x for x in rows.pop("split") if x]
            if splits:
                # (the run of the median wall, split: its parts add up to its wall - medians of parts would not)
                mid = sorted(splits, key=lambda x: sum(x.values()))[len(splits) // 2]
                print("where the drain's wall went (the run of the median wall, %.1f s; slot-seconds / 2 slots, so the "
                      "parts add up to the wall; each part's median over the runs in brackets):" % sum(mid.values()))
                for key, label in SPLIT:
                    v = statistics.median(x[key] for x in splits)
                    print("  %-58s %6.1f s  %5.2f x bound  (%.1f)" % (label, mid[key], mid[key] / bound, v))
                out["split_cap%s" % cap] = dict((k, round(statistics.median(x[k] for x in splits), 2)) for k, _l in SPLIT)
            ratio = statistics.median(rows["drain"]) / statistics.median(rows["virsh"])
            pb = statistics.median(rows["playbook"]) / statistics.median(rows["virsh"])
            print("drain / serial virsh: %.2f (%s); playbook / serial virsh: %.2f (%s)" % (
                ratio, "ours faster" if ratio < 1 else "OURS SLOWER", pb, "ours faster" if pb < 1 else "OURS SLOWER"))
            if cap:
                to_bound = statistics.median(rows["drain"]) / bound
                verdicts = ("met" if to_bound <= 1.3 else "MISSED", "met" if ratio <= 0.5 else "MISSED")
                print("goals (issue 26): the capped drain <= 1.3 x the bytes bound: %.2f x -> %s; <= 0.5 x serial "
                      "virsh: %.2f x -> %s" % (to_bound, verdicts[0], ratio, verdicts[1]))
            out["cap%s" % (cap or 0)] = dict((k, round(statistics.median(v), 2)) for k, v in rows.items())
        print("BENCH_EVACUATE " + json.dumps(out))
    finally:
        for name in names:
            L.remove_guest(name)
        if own_lab:
            L.down()
    if guests.damage:
        print("\nINTEGRITY FAILURE after a benchmark move:\n" + "\n".join(guests.damage))
        return 1
    print("integrity: every guest intact after every benchmark move")
    return 0


if __name__ == "__main__":
    sys.exit(main())
