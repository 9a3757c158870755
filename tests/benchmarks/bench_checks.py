"""Benchmark: pre-migration checks in the lab (issue 3). Prints figures and ratios; asserts nothing.

  1 VM against 1 destination, and 30 VMs against 2 destinations, each measured three ways:
  - in the module (its elapsed_s: connections, facts, CPU comparison, storage markers),
  - the Ansible task as the operator sees it (ansible-playbook wall time over SSH),
  - the same checks called directly from Python through the hosts' unix sockets.
Run as root: .venv/bin/python tests/benchmarks/bench_checks.py  (brings its own lab up and down)
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lab"))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position


def collection_import():
    sys.path.insert(0, L.collections_path())
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClient  # pylint: disable=import-outside-toplevel
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.check_run import check_domains  # pylint: disable=import-outside-toplevel
    return LibvirtClient, check_domains


def ansible_run(names, destinations):
    out = L.state_path("ansible", "bench.json")
    t0 = time.monotonic()
    p = L.playbook(os.path.join(HERE, "check_bench.yml"),
                   extra_vars={"source_host": "h1", "bench_domains": names, "destinations": destinations,
                               "result_file": out})
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit("benchmark playbook failed:\n" + p.stdout[-4000:])
    with open(out) as f:
        return wall, json.load(f)


def main():
    own_lab = not L.load_state()
    if own_lab:
        L.up(3)
    try:
        kinds = ["nbd", "shared", "local"]
        names = []
        for i in range(30):
            name = "bench%02d" % i
            L.define_guest(name, "h1", disk=kinds[i % 3], start=False, memory_mib=128)
            names.append(name)
        LibvirtClient, check_domains = collection_import()
        rows = []
        for label, doms, dests in (("1 VM x 1 destination", names[:1], ["h2"]),
                                   ("30 VMs x 2 destinations", names, ["h2", "h3"])):
            ansible_run(doms[:1], dests[:1])  # warm SSH and the module cache once
            wall, module_s = ansible_run(doms, dests)
            t0 = time.monotonic()
            src = LibvirtClient(L.uri("h1"))
            for d in dests:
                check_domains(src, LibvirtClient(L.uri(d)), doms, reserve_mib=64)
            direct = time.monotonic() - t0
            checks = len(doms) * len(dests)
            rows.append((label, checks, wall, sum(module_s), direct))
        print()
        print("pre-migration checks (migration_check), lab: 3 hosts, TCG, real libvirtd")
        print("%-26s %7s %12s %12s %12s %14s" % ("case", "checks", "task wall s", "module s", "direct s",
                                                 "module s/check"))
        for label, checks, wall, module_s, direct in rows:
            print("%-26s %7d %12.3f %12.3f %12.3f %14.4f" % (label, checks, wall, module_s, direct,
                                                             module_s / checks))
        one, many = rows
        print("ratio: 60 checks took %.1fx the module time of 1 check (%.1fx per check); goal < 1 s per VM: %s"
              % (many[3] / one[3], (many[3] / many[1]) / (one[3] / one[1]),
                 "met" if many[3] / many[1] < 1.0 else "NOT met"))
        print(json.dumps({"rows": [dict(zip(("case", "checks", "task_wall_s", "module_s", "direct_s"), r))
                                   for r in rows]}))
    finally:
        if own_lab:
            L.down()


if __name__ == "__main__":
    main()
