"""Frame builders, byte for byte against scapy's (a known-good, independent implementation)."""
import json

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import advertise as A

MAC = "52:54:00:18:00:01"
HOST_MAC = "02:00:00:00:00:11"


def test_garp_request_matches_scapy():
    ours = A.garp_frame("198.18.0.101", MAC)
    ref = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=MAC) /
                ARP(op=1, hwsrc=MAC, psrc="198.18.0.101", hwdst="00:00:00:00:00:00", pdst="198.18.0.101"))
    assert ours == ref and len(ours) == 42


def test_garp_reply_with_host_mac_matches_scapy():
    ours = A.garp_frame("198.18.0.101", MAC, sender_mac=HOST_MAC, op="reply")
    ref = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=HOST_MAC) /
                ARP(op=2, hwsrc=MAC, psrc="198.18.0.101", hwdst=MAC, pdst="198.18.0.101"))
    assert ours == ref


def test_unsolicited_na_matches_scapy():
    ours = A.unsolicited_na_frame("2001:db8:18::101", MAC)
    ref = bytes(Ether(dst="33:33:00:00:00:01", src=MAC) /
                IPv6(src="2001:db8:18::101", dst="ff02::1", hlim=255) /
                ICMPv6ND_NA(R=0, S=0, O=1, tgt="2001:db8:18::101") / ICMPv6NDOptDstLLAddr(lladdr=MAC))
    assert ours == ref and len(ours) == 86


def test_unsolicited_na_router_flag_and_sender():
    ours = A.unsolicited_na_frame("2001:db8:18::101", MAC, sender_mac=HOST_MAC, router=True)
    ref = bytes(Ether(dst="33:33:00:00:00:01", src=HOST_MAC) /
                IPv6(src="2001:db8:18::101", dst="ff02::1", hlim=255) /
                ICMPv6ND_NA(R=1, S=0, O=1, tgt="2001:db8:18::101") / ICMPv6NDOptDstLLAddr(lladdr=MAC))
    assert ours == ref


def test_bad_addresses():
    with pytest.raises(A.AdvertiseError, match="not a MAC address"):
        A.garp_frame("198.18.0.1", "52:54:00")
    with pytest.raises(ValueError):
        A.garp_frame("2001:db8::1", MAC)
    with pytest.raises(ValueError):
        A.unsolicited_na_frame("198.18.0.1", MAC)


def test_announce_self_command():
    cmd = json.loads(A.announce_self_command(50, 550, 5, 100))
    assert cmd == {"execute": "announce-self", "arguments": {"initial": 50, "max": 550, "rounds": 5, "step": 100}}


def test_send_frames_needs_root_and_a_real_interface():
    def denied():
        raise PermissionError(1, "Operation not permitted")
    with pytest.raises(A.AdvertiseError, match="needs root"):
        A.send_frames("br0", [b"x"], sock_factory=denied)

    class Sock:
        def __init__(self):
            self.sent = []

        def bind(self, addr):
            if addr[0] != "br0":
                raise OSError(19, "No such device")

        def send(self, frame):
            self.sent.append(frame)

        def close(self):
            pass
    sock = Sock()
    times = A.send_frames("br0", [b"a", b"b"], count=3, interval_s=0.1, sock_factory=lambda: sock,
                          sleep=lambda s: None)
    assert sock.sent == [b"a", b"b"] * 3 and len(times) == 3
    with pytest.raises(A.AdvertiseError, match="cannot send on interface nope"):
        A.send_frames("nope", [b"a"], sock_factory=Sock)


def test_route_move_plan_is_idempotent():
    plan = A.plan_route_moves(["198.18.0.101", "2001:db8:18::101"], {}, {"198.18.0.101/32": "br0"}, "br0")
    assert plan == {"add": ["198.18.0.101/32", "2001:db8:18::101/128"], "delete": ["198.18.0.101/32"]}
    done = A.plan_route_moves(["198.18.0.101", "2001:db8:18::101"],
                              {"198.18.0.101/32": "br0", "2001:db8:18::101/128": "br0"}, {}, "br0")
    assert done == {"add": [], "delete": []}
    # a route on the wrong device is replaced
    assert A.plan_route_moves(["198.18.0.101"], {"198.18.0.101/32": "eth9"}, {}, "br0")["add"] == ["198.18.0.101/32"]


NICS = [{"mac": "52:54:00:18:00:01", "bridge": "br0", "network": None, "tap": "vnet0"}]


def test_resolve_interfaces():
    out = A.resolve_interfaces([{"ipv4": ["198.18.0.101"], "ipv6": ["2001:db8:18::101"]}], NICS)
    assert out == [dict(NICS[0], ipv4=["198.18.0.101"], ipv6=["2001:db8:18::101"])]
    # addresses are sorted into families whatever list they came in
    out = A.resolve_interfaces([{"mac": "52:54:00:18:00:01", "ipv4": ["2001:db8::1"]}], NICS)
    assert out[0]["ipv6"] == ["2001:db8::1"] and out[0]["ipv4"] == []
    with pytest.raises(A.AdvertiseError, match="no interface with MAC 52:54:00:ff:ff:ff"):
        A.resolve_interfaces([{"mac": "52:54:00:FF:FF:FF"}], NICS)
    with pytest.raises(A.AdvertiseError, match="has 2 interfaces: give the mac"):
        A.resolve_interfaces([{"ipv4": ["198.18.0.1"]}], NICS * 2)


def test_domain_nics_from_live_xml():
    class Dom:  # pylint: disable=too-few-public-methods
        @staticmethod
        def XMLDesc(flags):  # pylint: disable=invalid-name,unused-argument
            return ("<domain><devices><interface type='bridge'><mac address='52:54:00:18:00:01'/>"
                    "<source bridge='br2'/><target dev='vnet3'/></interface></devices></domain>")
    assert A.domain_nics(None, Dom()) == [{"mac": "52:54:00:18:00:01", "bridge": "br2", "network": None,
                                           "tap": "vnet3"}]


# --- address discovery ------------------------------------------------------------------------------

NEIGH = [  # `ip -j neigh show` as iproute2 6.1 prints it
    {"dst": "198.18.2.101", "dev": "br2", "lladdr": "52:54:00:18:00:01", "state": ["REACHABLE"]},
    {"dst": "2001:db8:18:2::101", "dev": "br2", "lladdr": "52:54:00:18:00:01", "router": None, "state": ["STALE"]},
    {"dst": "fe80::5054:ff:fe18:1", "dev": "br2", "lladdr": "52:54:00:18:00:01", "state": ["STALE"]},
    {"dst": "198.18.2.102", "dev": "br2", "state": ["FAILED"]},
    {"dst": "198.18.0.5", "dev": "br0", "lladdr": "02:18:00:00:00:05", "state": ["INCOMPLETE"]},
    {"dst": "198.18.0.6", "dev": "br0", "lladdr": "02:18:00:00:00:06", "state": ["PERMANENT"]},
]


def test_neighbour_table_by_mac_without_link_local_or_failed():
    assert A.parse_neighbours(NEIGH) == {
        "52:54:00:18:00:01": {"ipv4": ["198.18.2.101"], "ipv6": ["2001:db8:18:2::101"]},
        "02:18:00:00:00:06": {"ipv4": ["198.18.0.6"], "ipv6": []}}
    assert A.parse_neighbours([]) == {}
    assert dict((str(a), m) for a, m in A.neighbour_entries(NEIGH)) == {
        "198.18.2.101": "52:54:00:18:00:01", "2001:db8:18:2::101": "52:54:00:18:00:01",
        "198.18.0.6": "02:18:00:00:00:06"}


def test_libvirt_addresses():
    # virDomainInterfaceAddresses' answer (type 0 = IPv4, 1 = IPv6)
    got = {"eth0": {"hwaddr": "52:54:00:18:00:01", "addrs": [
        {"type": 0, "addr": "198.18.0.101", "prefix": 24}, {"type": 1, "addr": "fe80::1", "prefix": 64},
        {"type": 1, "addr": "2001:db8:18::101", "prefix": 64}]},
        "lo": {"hwaddr": "00:00:00:00:00:00", "addrs": [{"type": 0, "addr": "127.0.0.1", "prefix": 8}]}}
    assert A.parse_libvirt_addresses(got) == {"52:54:00:18:00:01": {"ipv4": ["198.18.0.101"],
                                                                    "ipv6": ["2001:db8:18::101"]}}


def test_merge_keeps_the_domain_order_and_names_sources():
    nics = [{"mac": "52:54:00:18:00:02"}, {"mac": "52:54:00:18:00:01"}]
    merged = A.merge_addresses(nics, [
        ("agent", {"52:54:00:18:00:01": {"ipv4": ["198.18.0.101"], "ipv6": []}}),
        ("neighbours", {"52:54:00:18:00:01": {"ipv4": ["198.18.0.101"], "ipv6": ["2001:db8:18::101"]}})])
    assert merged == [
        {"mac": "52:54:00:18:00:02", "ipv4": [], "ipv6": [], "sources": []},
        {"mac": "52:54:00:18:00:01", "ipv4": ["198.18.0.101"], "ipv6": ["2001:db8:18::101"],
         "sources": ["agent", "neighbours"]}]


class FakeRun:  # pylint: disable=too-few-public-methods
    def __init__(self, outputs):
        self.outputs, self.calls = outputs, []

    def __call__(self, cmd):
        self.calls.append(cmd)
        return 0, self.outputs.get(" ".join(cmd[:4]), ""), ""


def test_state_absent_removes_routes_and_proxy_entries_once():
    run = FakeRun({"ip -4 route show": "198.18.2.101 dev br2 scope link\n",
                   "ip -6 route show": "2001:db8:18:2::101 dev br2 metric 1024 pref medium\n",
                   "ip -6 neigh show": "2001:db8:18:2::101 dev br0 proxy\n"})
    p = {"interfaces": [{"ipv4": ["198.18.2.101"], "ipv6": ["2001:db8:18:2::101"]}], "route_bridge": "br2",
         "proxy_ndp": True, "announce_interface": "br0"}
    out = A.remove_routes(p, run, check_mode=False)
    assert out["changed"] and out["routes"]["removed"] == ["198.18.2.101/32", "2001:db8:18:2::101/128"]
    assert out["proxy_ndp"]["removed"] == ["2001:db8:18:2::101"]
    assert ["ip", "-6", "neigh", "del", "proxy", "2001:db8:18:2::101", "dev", "br0"] in run.calls
    # nothing there any more: nothing to do
    gone = A.remove_routes(p, FakeRun({}), check_mode=False)
    assert not gone["changed"] and gone["proxy_ndp"]["removed"] == []
    with pytest.raises(A.AdvertiseError, match="proxy_ndp needs announce_interface"):
        A.remove_routes(dict(p, announce_interface=None), run, check_mode=True)


# --- verification probes ------------------------------------------------------------------------------

def test_echo_requests_match_scapy():
    from scapy.layers.inet import ICMP
    from scapy.layers.inet6 import ICMPv6EchoRequest
    assert A.echo_request(0x1234, 7, 4, b"abc") == bytes(ICMP(type=8, id=0x1234, seq=7) / b"abc")
    # ICMPv6: the kernel computes the checksum of raw ICMPv6 sockets, so it is left zero
    ref = bytearray(bytes(ICMPv6EchoRequest(id=0x1234, seq=7, data=b"abc", cksum=0)))
    assert A.echo_request(0x1234, 7, 6, b"abc") == bytes(ref)


def test_echo_reply_parsing():
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.inet6 import ICMPv6EchoReply
    reply4 = bytes(IP(src="198.18.0.101", dst="198.18.0.2") / ICMP(type=0, id=5, seq=9))
    assert A.parse_echo_reply(reply4, 4) == (5, 9)
    request4 = bytes(IP(src="198.18.0.2", dst="198.18.0.101") / ICMP(type=8, id=5, seq=9))
    assert A.parse_echo_reply(request4, 4) is None
    assert A.parse_echo_reply(bytes(ICMPv6EchoReply(id=5, seq=9)), 6) == (5, 9)
    assert A.parse_echo_reply(b"\x81\x00", 6) is None


def test_probes_need_root():
    def denied(_version):
        raise PermissionError(1, "Operation not permitted")
    with pytest.raises(A.AdvertiseError, match="need root"):
        A.wait_reachable(["198.18.0.101"], 1, sock_factory=denied)


def test_addresses_the_guest_does_not_hold():
    nics = [{"mac": "52:54:00:18:00:01", "ipv4": ["198.18.0.101", "198.18.0.250"], "ipv6": ["2001:db8:18::101"]},
            {"mac": "52:54:00:18:00:02", "ipv4": ["198.18.1.7"], "ipv6": []}]
    reported = {"52:54:00:18:00:01": {"ipv4": ["198.18.0.101"], "ipv6": ["2001:db8:18::101"]}}
    # the second NIC is not reported on: nothing to say about it
    assert A.unconfirmed(nics, reported) == [("52:54:00:18:00:01", "198.18.0.250",
                                              ["198.18.0.101", "2001:db8:18::101"])]
    assert A.unconfirmed(nics, {}) == []


class _EchoPeer:
    """A raw ICMP socket stand-in: a datagram socketpair whose far end answers each echo request sent to an
    address in ANSWERS after that many requests (select() works on it like on the real one)."""

    def __init__(self, answers):
        import socket
        self.near, self.far = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.answers, self.sent, self.peer_of = dict(answers), [], {}

    def fileno(self):
        return self.near.fileno()

    def sendto(self, data, addr):
        import struct
        self.sent.append(addr[0])
        need = self.answers.get(addr[0])
        if need is not None and self.sent.count(addr[0]) >= need:
            ip_header = bytes([0x45]) + bytes(19)
            reply = bytes([0]) + data[1:2] + b"\0\0" + data[4:8] + data[8:]
            self.far.send(struct.pack("!B", len(addr[0])) + addr[0].encode() + ip_header + reply)

    def recvfrom(self, size):
        raw = self.near.recv(size)
        n = raw[0]
        return raw[1 + n:], (raw[1:1 + n].decode(), 0)

    def close(self):
        self.near.close()
        self.far.close()


def test_wait_reachable_asks_again_until_each_answers_and_stops_at_its_deadline():
    peer = _EchoPeer({"198.18.0.101": 3})                  # answers from its third echo on; .102 never
    got = A.wait_reachable(["198.18.0.101", "198.18.0.102"], 0.6, interval_s=0.05,
                           sock_factory=lambda v: peer)
    assert got["198.18.0.101"] is not None and 0.08 <= got["198.18.0.101"] < 0.6
    assert got["198.18.0.102"] is None
    assert peer.sent.count("198.18.0.101") == 3            # no echo after its answer
    assert 8 <= peer.sent.count("198.18.0.102") <= 14      # one every 50 ms for 0.6 s
    peer = _EchoPeer({"198.18.0.101": 1})
    import time
    t0 = time.monotonic()
    got = A.wait_reachable(["198.18.0.101"], 5, sock_factory=lambda v: peer)
    assert got["198.18.0.101"] < 0.5 and time.monotonic() - t0 < 0.5    # ends with the last answer
