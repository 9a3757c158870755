"""Placement and scheduling of an evacuation: constraints always hold, and the plan is sensible."""
import random

import pytest

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import planner as P

HOSTS = [{"name": "h2", "free_mib": 4096}, {"name": "h3", "free_mib": 2048}]


def test_largest_first_on_the_roomiest_host():
    vms = [{"name": "a", "memory_mib": 512}, {"name": "b", "memory_mib": 2048}, {"name": "c", "memory_mib": 1024}]
    out = P.place(vms, HOSTS)
    # b: h2 (4096 free); c: tie at 2048, first by name -> h2; a: h3 now has the most room
    assert out["placements"] == {"b": "h2", "c": "h2", "a": "h3"}
    assert out["unplaced"] == {}
    assert out["free_after"] == {"h2": 1024.0, "h3": 1536.0}


def test_headroom_and_memory():
    out = P.place([{"name": "big", "memory_mib": 4000}], HOSTS, headroom_mib=512)
    assert out["placements"] == {} and "no host fits" in out["unplaced"]["big"]


def test_anti_affinity_and_existing_groups():
    vms = [{"name": "db1", "memory_mib": 256, "group": "db"}, {"name": "db2", "memory_mib": 256, "group": "db"},
           {"name": "db3", "memory_mib": 256, "group": "db"}]
    out = P.place(vms, HOSTS + [{"name": "h4", "free_mib": 8192, "groups": ["db"]}])
    assert sorted(out["placements"].values()) == ["h2", "h3"]
    assert "anti-affinity" in out["unplaced"]["db3"] or "no host fits" in out["unplaced"]["db3"]


def test_pinned_allowed_and_unmovable():
    vms = [{"name": "p", "memory_mib": 256, "pinned": "h3"},
           {"name": "q", "memory_mib": 256, "pinned": "h3", "group": "g"},
           {"name": "r", "memory_mib": 256, "allowed": ["h3"]},
           {"name": "s", "memory_mib": 256, "method": "none", "reason": "hostdev"},
           {"name": "t", "memory_mib": 99999, "pinned": "h2"}]
    out = P.place(vms, HOSTS)
    assert out["placements"] == {"p": "h3", "q": "h3", "r": "h3"}
    assert out["unplaced"]["s"] == "hostdev"
    assert out["unplaced"]["t"].startswith("pinned to h2: not enough memory")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_instances_never_break_a_constraint(seed):
    rnd = random.Random(seed)
    hosts = [{"name": "h%d" % i, "free_mib": rnd.choice([8192, 16384, 32768]),
              "groups": ["g%d" % rnd.randrange(20)] if rnd.random() < 0.2 else []} for i in range(40)]
    vms = [{"name": "vm%d" % i, "memory_mib": rnd.choice([512, 1024, 2048, 4096]),
            "group": "g%d" % rnd.randrange(20) if rnd.random() < 0.3 else None,
            "allowed": rnd.sample([h["name"] for h in hosts], 5) if rnd.random() < 0.1 else None}
           for i in range(300)]
    out = P.place(vms, hosts, headroom_mib=256)
    by_host = {}
    for vm in vms:
        host = out["placements"].get(vm["name"])
        if host is None:
            assert vm["name"] in out["unplaced"]
            continue
        by_host.setdefault(host, []).append(vm)
        if vm["allowed"] is not None:
            assert host in vm["allowed"]
    for h in hosts:
        placed = by_host.get(h["name"], [])
        assert sum(v["memory_mib"] for v in placed) <= h["free_mib"] - 256
        grp = [v["group"] for v in placed if v["group"]] + list(h["groups"])
        assert len(grp) == len(set(grp))
    assert len(out["placements"]) + len(out["unplaced"]) == len(vms)


def test_schedule_respects_every_limit_and_runs_longest_first():
    moves = [{"name": "vm%d" % i, "source": "h1", "dest": "h%d" % (2 + i % 3), "memory_mib": 256 * (1 + i % 4)}
             for i in range(12)]
    timeline, makespan = P.schedule(moves, rate_mibps=100, max_out=2, max_in=1, max_total=2, overhead_s=1)
    assert len(timeline) == 12
    events = sorted([(t["start_s"], 1, t) for t in timeline] + [(t["end_s"], 0, t) for t in timeline],
                    key=lambda e: (e[0], e[1]))
    out_n, in_n, total = 0, {}, 0
    for _t, kind, t in events:
        delta = 1 if kind == 1 else -1
        out_n += delta
        total += delta
        in_n[t["dest"]] = in_n.get(t["dest"], 0) + delta
        assert out_n <= 2 and total <= 2 and in_n[t["dest"]] <= 1
    assert timeline[0]["name"] in ("vm3", "vm7", "vm11")           # 1024 MiB ones first
    # never shorter than the work divided by the parallelism it may use
    work = sum(1 + m["memory_mib"] / 100.0 for m in moves)
    assert makespan >= work / 2 - 1e-6
    with pytest.raises(ValueError):
        P.schedule(moves, rate_mibps=0)


def test_balance():
    hosts = [{"name": "a", "capacity_mib": 100}, {"name": "b", "capacity_mib": 100}]
    assert P.balance(hosts, {"a": 50, "b": 50}) == {"max_utilisation": 0.5, "lower_bound": 0.5, "ratio": 1.0}
    assert P.balance(hosts, {"a": 0, "b": 100})["ratio"] == 2.0


def test_the_drain_admits_moves_exactly_as_the_schedule_predicted():
    """One scheduler: run the plan's moves through the drain's admission (evacuate's admit) with the durations
    the schedule assumed, and every move starts when the prediction said."""
    import heapq
    import random
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import drain as E
    rnd = random.Random(7)
    for trial in range(50):
        limits = {"max_outbound": rnd.randint(1, 4), "max_inbound": rnd.randint(1, 3), "max_total": rnd.randint(1, 5)}
        moves = [{"name": "vm%02d" % i, "source": "h1", "dest": rnd.choice(["h2", "h3", "h4"]),
                  "memory_mib": rnd.choice([256, 512, 1024, 2048, 4096])} for i in range(rnd.randint(1, 14))]
        timeline, _makespan = P.schedule(moves, 1000, limits["max_outbound"], limits["max_inbound"],
                                         limits["max_total"])
        duration = dict((t["name"], t["end_s"] - t["start_s"]) for t in timeline)
        pending = [{"name": t["name"], "destination": t["dest"]} for t in timeline]    # the plan's order
        running, now, started = [], 0.0, {}
        while pending or running:
            while True:
                m = E.admit(pending, [r[2] for r in running], limits)
                if m is None:
                    break
                pending.remove(m)
                started[m["name"]] = round(now, 3)
                heapq.heappush(running, (now + duration[m["name"]], m["name"], m))
            if running:
                now = heapq.heappop(running)[0]
        assert started == dict((t["name"], t["start_s"]) for t in timeline), (trial, limits)
