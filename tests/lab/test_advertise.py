"""IP advertisement in the lab: flat L2 (stale neighbour and forwarding entries corrected by GARP,
unsolicited NA and announce-self) and a routed design (router namespace reaching /32 guests through
their hypervisor by proxy-ARP): after a migration without advertisement the guest stays unreachable
from the router; with the module's route move + GARP it answers again."""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position
from test_integration import TARGETS, run_target  # noqa: E402  pylint: disable=wrong-import-position

WRONG = "02:00:00:00:00:99"


def neigh(ns, ip):
    fam = "-6" if ":" in ip else "-4"
    out = L.run(["ip", "-n", L.NS + ns, fam, "neigh", "show", ip]).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


def fdb_port(mac):
    for line in L.run(["bridge", "-n", L.NS + "sw", "fdb", "show", "br", "br0"]).stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == mac and "dev" in parts:
            return parts[parts.index("dev") + 1]
    return None


def test_flat_l2(lab):
    g = L.define_guest("adv_l2", "h1", disk="none")
    L.wait_guest(g["ip"])
    L.run(["virsh", "-c", L.uri("h1"), "migrate", "--live", "--p2p", "--persistent", "--undefinesource", "adv_l2",
           L.tcp_uri("h2")], timeout=120)
    # QEMU has the guest announce itself for about a second after a migration (virtio-net's guest
    # announce): let that finish, so that what corrects the planted entries below is the module
    time.sleep(4)
    for path in (L.state_path("adv-go"), L.state_path("result-adv-check.json")):
        if os.path.exists(path):
            os.unlink(path)
    # stale state, as after a move the network did not notice
    L.run(["ip", "-n", L.NS + "cli", "neigh", "replace", g["ip"], "lladdr", WRONG, "dev", "eth0", "nud", "stale"])
    L.run(["ip", "-n", L.NS + "cli", "-6", "neigh", "replace", g["ip6"], "lladdr", WRONG, "dev", "eth0",
           "nud", "stale"])
    L.run(["bridge", "-n", L.NS + "sw", "fdb", "replace", g["mac"], "dev", "h3", "master", "dynamic"])
    assert (neigh("cli", g["ip"]), neigh("cli", g["ip6"]), fdb_port(g["mac"])) == (WRONG, WRONG, "h3")
    out = {}
    t = threading.Thread(target=lambda: out.update(p=L.playbook(
        os.path.join(TARGETS, "lab_target.yml"),
        extra_vars={"target": "ip_advertise", "target_hosts": "h2", "adv_ip": g["ip"], "adv_ip6": g["ip6"],
                    "adv_mac": g["mac"]})))
    t.start()
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(L.state_path("result-adv-check.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        # check mode sent nothing: the client's stale entries are still there (the switch's forwarding
        # entry is not checked here: any frame the guest sends by itself corrects it)
        assert (neigh("cli", g["ip"]), neigh("cli", g["ip6"])) == (WRONG, WRONG)
    finally:
        open(L.state_path("adv-go"), "w").close()
        t.join(120)
    assert out["p"].returncode == 0, out["p"].stdout[-5000:]
    assert neigh("cli", g["ip"]) == g["mac"]
    assert neigh("cli", g["ip6"]) == g["mac"]
    assert fdb_port(g["mac"]) == "h2"
    for ip in (g["ip"], g["ip6"]):
        assert L.run(L.ns_exec("cli", ["ping", "-c", "2", "-i", "0.2", "-W", "1", ip]), check=False).returncode == 0
    L.virsh("h2", "destroy", "adv_l2")


def ping6(ns, ip):
    return L.run(L.ns_exec(ns, ["ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", ip]), check=False).returncode == 0


def test_routed(lab, figures):
    L.routed_up()
    g = L.define_guest("rt1", "h1", disk="none", routed=True)
    L.wait_guest(g["ip"], ns="rtr")
    # the source hypervisor is the guest's gateway: its neighbour table knows both addresses
    assert ping6("rtr", g["ip6"]), "routed IPv6 (proxy NDP) does not work in the lab"
    before = L.guest_status(g["ip"], ns="rtr")
    assert before is not None

    def migrate(src, dst):
        L.run(["virsh", "-c", L.uri(src), "migrate", "--live", "--p2p", "--persistent", "--undefinesource", "rt1",
               L.tcp_uri(dst)], timeout=120)

    # 1. the whole sequence through Ansible: discover on h1, migrate to h2, move routes and proxy-NDP
    #    entries, GARP + unsolicited NA with h2's MAC, verify IPv4 and IPv6 from beyond the router
    result = L.state_path("result-routed.json")
    with L.Blackout(g["ip"], hz=100, ns="rtr", times=True) as with_ansible:
        run_target("ip_advertise_routed", target_hosts="h1", rt_guest="rt1", rt_ip=g["ip"], rt_ip6=g["ip6"],
                   adv_source="h1", adv_dest="h2", rt_result=result)
    with open(result) as f:
        reach = json.load(f)
    assert with_ansible.result["received"] > 0
    figures["routed_ansible_migration_end_to_both_answering_s"] = reach["since_s"]
    assert L.host_routes("h1") == {}
    assert L.host_routes("h2") == {g["ip"] + "/32": "br2", g["ip6"] + "/128": "br2"}
    assert L.guest_status(g["ip"], ns="rtr")["boot_id"] == before["boot_id"]
    assert ping6("rtr", g["ip6"])

    # 2. migrate h2 -> h1 and advertise nothing: the router keeps sending to h2, which still answers
    #    for the guest by proxy-ARP and proxy NDP and routes it into an empty bridge
    with L.Blackout(g["ip"], hz=100, ns="rtr", times=True) as without:
        migrate("h2", "h1")
        moved = time.monotonic()
        time.sleep(10)
    assert without.first_reply_after(moved) is None, "reachable without advertisement?"
    assert not ping6("rtr", g["ip6"])
    figures["routed_without_module_first_reply_s"] = "none within 10 s (IPv4 and IPv6)"

    # 3. the module's own code run the moment the migration ends (without Ansible's start-up): route and
    #    proxy entry moves, GARP and NA with the host's MAC; time from migration end to first reply
    def fast_script(host):
        return ("import sys, subprocess; sys.path.insert(0, %r)\n"
                "from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import advertise as A\n"
                "subprocess.check_call(['ip', 'route', 'replace', %r, 'dev', 'br2'])\n"
                "subprocess.check_call(['ip', '-6', 'route', 'replace', %r, 'dev', 'br2'])\n"
                "subprocess.check_call(['ip', '-6', 'neigh', 'replace', 'proxy', %r, 'dev', 'br0'])\n"
                "mac = open('/sys/class/net/br0/address').read().strip()\n"
                "A.send_frames('br0', [A.garp_frame(%r, mac, mac), A.unsolicited_na_frame(%r, mac, mac, True)],"
                " count=3, interval_s=0.05)\n"
                % (L.collections_path(), g["ip"] + "/32", g["ip6"] + "/128", g["ip6"], g["ip"], g["ip6"]))

    for prefix in (g["ip"] + "/32", g["ip6"] + "/128"):
        L.run(["ip", "-n", L.NS + "h2", "route", "del", prefix, "dev", "br2"])
    L.run(["ip", "-n", L.NS + "h2", "-6", "neigh", "del", "proxy", g["ip6"], "dev", "br0"])
    L.run(L.host_enter("h1") + [L.VENV_PY, "-c", fast_script("h1")])
    L.wait_guest(g["ip"], ns="rtr")
    with L.Blackout(g["ip"], hz=100, ns="rtr", times=True) as fast:
        migrate("h1", "h2")
        moved = time.monotonic()
        for prefix in (g["ip"] + "/32", g["ip6"] + "/128"):
            L.run(["ip", "-n", L.NS + "h1", "route", "del", prefix, "dev", "br2"])
        L.run(["ip", "-n", L.NS + "h1", "-6", "neigh", "del", "proxy", g["ip6"], "dev", "br0"])
        L.run(L.host_enter("h2") + [L.VENV_PY, "-c", fast_script("h2")])
        time.sleep(2)
    first = fast.first_reply_after(moved)
    assert first is not None
    figures["routed_fast_advertisement_first_reply_ms"] = round(first * 1000, 1)
    assert L.guest_status(g["ip"], ns="rtr") is not None and ping6("rtr", g["ip6"])
    L.virsh("h2", "destroy", "rt1")
    for prefix in (g["ip"] + "/32", g["ip6"] + "/128"):
        L.run(["ip", "-n", L.NS + "h2", "route", "del", prefix, "dev", "br2"], check=False)
    L.run(["ip", "-n", L.NS + "h2", "-6", "neigh", "del", "proxy", g["ip6"], "dev", "br0"], check=False)


def test_migrate_vm_role_routed(lab, figures):
    """The migrate_vm playbook (role) with activation and verification in the routed design: the
    addresses found on the source, routes and proxy-NDP entries moved, the host's MAC announced, the
    guest answering from beyond the router; a second run changes nothing."""
    L.routed_up()
    g = L.define_guest("rt2", "h1", disk="none", routed=True)
    L.wait_guest(g["ip"], ns="rtr")
    assert ping6("rtr", g["ip6"])
    before = L.guest_status(g["ip"], ns="rtr")
    extra = {"vm": "rt2", "source": "h1", "destination": "h2", "migrate_vm_advertise": True,
             "migrate_vm_advertise_methods": ["route", "garp", "unsolicited_na"],
             "migrate_vm_advertise_sender_mac": "host", "migrate_vm_announce_interface": "br0",
             "migrate_vm_route_bridge": "br2", "migrate_vm_proxy_ndp": True, "migrate_vm_verify_from": "localhost",
             "migrate_vm_options": {"headroom_mib": 64}, "result_file": L.state_path("result-rt2.json")}
    playbook = os.path.join(L.TOP, "playbooks", "migrate_vm.yml")
    p = L.playbook(playbook, extra_vars=extra)
    assert p.returncode == 0, p.stdout[-6000:]
    assert "answering " in p.stdout and "s after the move" in p.stdout
    mine = (g["ip"] + "/32", g["ip6"] + "/128")
    assert [r for r in L.host_routes("h1") if r in mine] == []
    assert dict((r, d) for r, d in L.host_routes("h2").items() if r in mine) == {mine[0]: "br2", mine[1]: "br2"}
    after = L.guest_status(g["ip"], ns="rtr")
    assert after is not None and after["boot_id"] == before["boot_id"]
    assert ping6("rtr", g["ip6"])
    again = L.playbook(playbook, extra_vars=dict((k, v) for k, v in extra.items() if k != "result_file"))
    assert again.returncode == 0, again.stdout[-4000:]
    assert "changed=0" in again.stdout.split("PLAY RECAP")[-1], again.stdout[-3000:]
    L.virsh("h2", "destroy", "rt2")
