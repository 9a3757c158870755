"""Evacuation planning against the lab's real hypervisors (the drain itself comes with the roles)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position
from test_integration import AVX512_CPU, run_target  # noqa: E402  pylint: disable=wrong-import-position


def test_evacuation_plan(lab):
    guests = [("ep_a", dict(disk="nbd", memory_mib=128)), ("ep_b", dict(disk="nbd", memory_mib=128)),
              ("ep_c", dict(disk="local", memory_mib=128)), ("ep_d", dict(disk="none", memory_mib=128, network="br1")),
              ("ep_cpu", dict(disk="none", start=False, cpu_xml=AVX512_CPU))]
    try:
        for name, kw in guests:
            L.define_guest(name, "h1", **kw)
        run_target("evacuation_plan", target_hosts="h1")
    finally:
        for name, _kw in guests:
            L.remove_guest(name)
