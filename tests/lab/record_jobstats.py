"""Record real libvirt job-statistics sequences in the lab, for the strategy unit tests to replay.

  .venv/bin/python tests/lab/record_jobstats.py OUT.json DOMAIN SRC DST [--bandwidth MIB] [--postcopy-at N]
       [--abort-after S]

Migrates DOMAIN from SRC to DST (plain libvirt, peer-to-peer), reading jobStats() every 0.25 s, and
writes {"scenario": ..., "samples": [{"t": s, ...stats}], "completed": {...}} to OUT.json.
"""
import argparse
import json
import os
import sys
import threading
import time

import libvirt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

KEYS = ("type", "time_elapsed", "data_total", "data_processed", "data_remaining", "memory_total",
        "memory_processed", "memory_remaining", "memory_bps", "memory_dirty_rate", "memory_iteration",
        "memory_postcopy_requests", "downtime")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("domain")
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--bandwidth", type=int, default=0)
    ap.add_argument("--postcopy-at", type=int, default=0, help="switch to post-copy at this iteration")
    ap.add_argument("--abort-after", type=float, default=0)
    a = ap.parse_args()
    conn = libvirt.open(L.uri(a.src))
    dom = conn.lookupByName(a.domain)
    flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
    if a.postcopy_at:
        flags |= libvirt.VIR_MIGRATE_POSTCOPY
    params = {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: a.bandwidth} if a.bandwidth else {}
    out = {}

    def work():
        try:
            dom.migrateToURI3(L.tcp_uri(a.dst), params, flags)
            out["ok"] = True
        except libvirt.libvirtError as e:
            out["error"] = str(e)
    t0 = time.monotonic()
    th = threading.Thread(target=work)
    th.start()
    samples, switched, aborted = [], False, False
    while th.is_alive():
        try:
            st = dom.jobStats(0)
        except libvirt.libvirtError:
            st = {}
        if st.get("type"):
            s = {k: st.get(k) for k in KEYS}
            s["t"] = round(time.monotonic() - t0, 3)
            samples.append(s)
            if a.postcopy_at and not switched and (st.get("memory_iteration") or 0) >= a.postcopy_at:
                switched = True
                try:
                    dom.migrateStartPostCopy(0)
                except libvirt.libvirtError:
                    pass
            if a.abort_after and not aborted and s["t"] >= a.abort_after:
                aborted = True
                dom.abortJob()
        th.join(0.25)
    try:
        completed = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    except libvirt.libvirtError:
        completed = {}
    scenario = {"domain": a.domain, "bandwidth_mibps": a.bandwidth, "postcopy_at": a.postcopy_at,
                "abort_after": a.abort_after, "outcome": "ok" if out.get("ok") else out.get("error")}
    with open(a.out, "w") as f:
        json.dump({"scenario": scenario, "samples": samples,
                   "completed": {k: completed.get(k) for k in KEYS}}, f, indent=0)
    print("%d samples, %s" % (len(samples), scenario["outcome"]))


if __name__ == "__main__":
    main()
