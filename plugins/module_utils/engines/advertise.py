# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Post-migration IP advertisement: frame builders (pure), a raw-socket sender, QEMU's
announce-self command, and host-route move planning (pure).

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

import ipaddress
import json
import socket
import struct
import time

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import wait_until

BROADCAST = 'ff:ff:ff:ff:ff:ff'
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86dd


class AdvertiseError(Exception):
    pass


def mac_bytes(mac):
    parts = str(mac).replace('-', ':').split(':')
    if len(parts) != 6:
        raise AdvertiseError('not a MAC address: %s' % mac)
    try:
        return bytes(bytearray(int(p, 16) for p in parts))
    except ValueError:
        raise AdvertiseError('not a MAC address: %s' % mac)


def ethernet(dst_mac, src_mac, ethertype, payload):
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + struct.pack('!H', ethertype) + payload


def garp_frame(ip, mac, sender_mac=None, op='request'):
    """A gratuitous ARP for IP owned by MAC, sent from SENDER_MAC (default MAC).

    Request form (RFC 5227 announcement): sender and target IP both IP, target MAC zero.
    Reply form: target MAC and IP equal the sender's. Broadcast either way.
    """
    addr = ipaddress.IPv4Address(ip)
    src = sender_mac or mac
    opcode = {'request': 1, 'reply': 2}[op]
    target_mac = mac_bytes('00:00:00:00:00:00') if op == 'request' else mac_bytes(mac)
    arp = struct.pack('!HHBBH', 1, 0x0800, 6, 4, opcode) + mac_bytes(mac) + addr.packed + target_mac + addr.packed
    return ethernet(BROADCAST, src, ETH_P_ARP, arp)


def _checksum(data):
    if len(data) % 2:
        data += b'\0'
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp6_checksum(src, dst, icmp):
    pseudo = src.packed + dst.packed + struct.pack('!I3xB', len(icmp), 58)
    return _checksum(pseudo + icmp)


def unsolicited_na_frame(ip6, mac, sender_mac=None, router=False):
    """An unsolicited neighbour advertisement (RFC 4861 7.2.6) for IP6 at MAC, override flag set,
    to all nodes (ff02::1), with the target link-layer address option."""
    target = ipaddress.IPv6Address(ip6)
    dst = ipaddress.IPv6Address('ff02::1')
    flags = (0x80000000 if router else 0) | 0x20000000  # R, O (S is 0: unsolicited)
    body = struct.pack('!BBHI', 136, 0, 0, flags) + target.packed + struct.pack('!BB', 2, 1) + mac_bytes(mac)
    csum = icmp6_checksum(target, dst, body)
    body = body[:2] + struct.pack('!H', csum) + body[4:]
    ip6hdr = struct.pack('!IHBB', 6 << 28, len(body), 58, 255) + target.packed + dst.packed
    return ethernet('33:33:00:00:00:01', sender_mac or mac, ETH_P_IPV6, ip6hdr + body)


def announce_self_command(initial_ms=50, max_ms=550, rounds=5, step_ms=100):
    """QMP announce-self: QEMU sends RARP (and more) for every guest NIC again."""
    return json.dumps({'execute': 'announce-self',
                       'arguments': {'initial': initial_ms, 'max': max_ms, 'rounds': rounds, 'step': step_ms}})


def announce_self(dom, **kw):
    """Have QEMU announce the domain's NICs again (QMP announce-self through libvirt's QEMU monitor API:
    works over a remote connection, needs no root). KW: announce_self_command's arguments."""
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import (  # pylint: disable=import-outside-toplevel
        LibvirtClientError, qemu_monitor_command)
    try:
        qemu_monitor_command(dom, announce_self_command(**kw), 0)
    except LibvirtClientError as e:
        raise AdvertiseError('QEMU announce-self failed: %s' % e.detail)


def send_frames(ifname, frames, count=1, interval_s=0.0, sock_factory=None, sleep=time.sleep):
    """Send each frame COUNT times on IFNAME through a raw packet socket; returns send times."""
    factory = sock_factory or (lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
    try:
        sock = factory()
    except PermissionError:
        raise AdvertiseError('sending raw frames needs root (CAP_NET_RAW): run the task with become: true')
    times = []
    try:
        try:
            sock.bind((ifname, 0))
        except OSError as e:
            raise AdvertiseError('cannot send on interface %s: %s' % (ifname, e))
        for i in range(count):
            for frame in frames:
                sock.send(frame)
            times.append(time.time())
            if i + 1 < count and interval_s:
                sleep(interval_s)
    finally:
        sock.close()
    return times


def host_route(addr):
    a = ipaddress.ip_address(addr)
    return '%s/%d' % (a, 32 if a.version == 4 else 128)


def plan_route_moves(addresses, dest_routes, source_routes, dev):
    """Which host routes to add on the destination and delete on the source (idempotent).

    DEST_ROUTES / SOURCE_ROUTES: {prefix: device} of the host routes each side has now.
    """
    add, delete = [], []
    for addr in addresses:
        prefix = host_route(addr)
        if dest_routes.get(prefix) != dev:
            add.append(prefix)
        if prefix in source_routes:
            delete.append(prefix)
    return {'add': add, 'delete': delete}


def domain_nics(client, dom):
    """The running domain's NICs on this host: mac, bridge, tap device, from the live XML."""
    import xml.etree.ElementTree as ET  # pylint: disable=import-outside-toplevel
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.typed import definition  # pylint: disable=import-outside-toplevel
    root = ET.fromstring(definition(dom))
    nics = []
    for iface in root.findall('./devices/interface'):
        mac = iface.find('mac')
        src = iface.find('source')
        tgt = iface.find('target')
        nics.append({'mac': mac.get('address').lower() if mac is not None else None,
                     'bridge': src.get('bridge') if src is not None else None,
                     'network': src.get('network') if src is not None else None,
                     'tap': tgt.get('dev') if tgt is not None else None})
    return nics


def resolve_interfaces(requested, nics):
    """Match the caller's interfaces (mac optional when the domain has one NIC) to the domain's NICs."""
    out = []
    by_mac = dict((n['mac'], n) for n in nics)
    for item in requested:
        mac = (item.get('mac') or '').lower()
        if not mac:
            if len(nics) != 1:
                raise AdvertiseError('the domain has %d interfaces: give the mac of each one to advertise'
                                     % len(nics))
            mac = nics[0]['mac']
        if mac not in by_mac:
            raise AdvertiseError('the domain has no interface with MAC %s (it has: %s)'
                                 % (mac, ', '.join(sorted(by_mac)) or 'none'))
        v4, v6 = [], []
        for addr in (item.get('ipv4') or []) + (item.get('ipv6') or []):
            a = ipaddress.ip_address(addr)
            (v4 if a.version == 4 else v6).append(str(a))
        out.append(dict(by_mac[mac], ipv4=v4, ipv6=v6))
    return out


def _is_addr(text):
    try:
        host_route(text)
        return True
    except ValueError:
        return False


def current_routes(run_command):
    """{prefix: device} of the host's main-table routes (run_command: AnsibleModule.run_command)."""
    routes = {}
    for fam in ('-4', '-6'):
        rc, out, err = run_command(['ip', fam, 'route', 'show', 'table', 'main'])
        if rc != 0:
            raise AdvertiseError('cannot read routes: %s' % err.strip())
        for line in out.splitlines():
            parts = line.split()
            if not parts or parts[0] == 'default':
                continue
            prefix = parts[0] if '/' in parts[0] else host_route(parts[0]) if _is_addr(parts[0]) else None
            if prefix and 'dev' in parts:
                routes[prefix] = parts[parts.index('dev') + 1]
    return routes


def _run(run_command, cmd):
    rc, _out, err = run_command(cmd)
    if rc != 0:
        raise AdvertiseError('%s failed: %s' % (' '.join(cmd), err.strip()))


def check_addresses(interfaces):
    for item in interfaces:
        for addr in (item.get('ipv4') or []) + (item.get('ipv6') or []):
            if not _is_addr(addr):
                raise AdvertiseError('not an IP address: %s' % addr)


def remove_routes(p, run_command, check_mode):
    """state=absent: remove the host routes of the addresses through route_bridge (on the source)."""
    check_addresses(p['interfaces'])
    if not p['route_bridge']:
        raise AdvertiseError('state=absent needs route_bridge (the domain may be gone from this host)')
    addrs = [a for i in p['interfaces'] for a in (i.get('ipv4') or []) + (i.get('ipv6') or [])]
    have = current_routes(run_command)
    gone = [host_route(a) for a in addrs if have.get(host_route(a)) == p['route_bridge']]
    proxies = []
    if p.get('proxy_ndp'):
        if not p.get('announce_interface'):
            raise AdvertiseError('proxy_ndp needs announce_interface (where the proxy entries are)')
        have_proxy = proxy_entries(run_command, p['announce_interface'])
        proxies = [str(ipaddress.ip_address(a)) for i in p['interfaces'] for a in i.get('ipv6') or []
                   if str(ipaddress.ip_address(a)) in have_proxy]
    if not check_mode:
        for prefix in gone:
            _run(run_command, ['ip', 'route', 'del', prefix, 'dev', p['route_bridge']])
        for a in proxies:
            _run(run_command, ['ip', '-6', 'neigh', 'del', 'proxy', a, 'dev', p['announce_interface']])
    return {'changed': bool(gone) or bool(proxies), 'sent': [],
            'routes': {'added': [], 'removed': gone}, 'proxy_ndp': {'added': [], 'removed': proxies}}


def interface_mac(ifname):
    try:
        with open('/sys/class/net/%s/address' % ifname) as f:
            return f.read().strip()
    except OSError:
        raise AdvertiseError('no interface %s on this host' % ifname)


def advertise(client, p, run_command, check_mode, send=send_frames):
    """state=present: routes (if asked), announce-self, GARP and NA for the domain running here."""
    dom = client.lookup(p['domain'])
    if dom is None or not dom.isActive():
        raise AdvertiseError('%s does not run on %s: advertise on the host that runs it' % (p['domain'], client.uri))
    discovered, notes = None, []
    if p.get('interfaces'):
        check_addresses(p['interfaces'])
        requested = p['interfaces']
    else:
        discovered, notes = discover_addresses(client, dom, p.get('address_sources') or ADDRESS_SOURCES, run_command)
        requested = [i for i in discovered if i['ipv4'] or i['ipv6']]
        if not requested:
            raise AdvertiseError('no address of %s found (%s)%s: give interfaces' % (
                p['domain'], ', '.join(p.get('address_sources') or ADDRESS_SOURCES),
                ' - ' + '; '.join(notes) if notes else ''))
    nics = resolve_interfaces(requested, domain_nics(client, dom))
    if discovered is None and p.get('check_guest_addresses', True):
        notes += check_against_agent(dom, nics)
    sent, added, proxied = [], [], []
    if p.get('proxy_ndp') and not p.get('announce_interface'):
        raise AdvertiseError('proxy_ndp needs announce_interface (where neighbour solicitations arrive)')
    if 'route' in p['methods']:
        have = current_routes(run_command)
        for nic in nics:
            dev = p['route_bridge'] or nic['bridge']
            for prefix in plan_route_moves(nic['ipv4'] + nic['ipv6'], have, {}, dev)['add']:
                if not check_mode:
                    _run(run_command, ['ip', 'route', 'replace', prefix, 'dev', dev])
                added.append(prefix)
        if p.get('proxy_ndp'):
            have_proxy = proxy_entries(run_command, p['announce_interface'])
            for a in [a for nic in nics for a in nic['ipv6'] if a not in have_proxy]:
                if not check_mode:
                    _run(run_command, ['ip', '-6', 'neigh', 'replace', 'proxy', a, 'dev', p['announce_interface']])
                proxied.append(a)
    if 'announce_self' in p['methods']:
        if not check_mode:
            announce_self(dom, rounds=p['count'], step_ms=max(1, p['interval_ms']))
        sent.append({'method': 'announce_self', 'interface': 'all', 'address': None, 'sender': None,
                     'count': p['count'], 'time': time.time()})
    for nic in nics:
        dev = p['announce_interface'] or nic['bridge'] or nic['tap']
        sender = {'vm': nic['mac'], 'host': None}.get(p['sender_mac'], p['sender_mac'].lower())
        if sender is None:
            sender = interface_mac(dev)
        # the link-layer address the network should map the IPs to: the VM's, or the one answering for it
        owner = nic['mac'] if p['sender_mac'] == 'vm' else sender
        frames = []
        if 'garp' in p['methods']:
            frames += [('garp', a, garp_frame(a, owner, sender)) for a in nic['ipv4']]
        if 'unsolicited_na' in p['methods']:
            frames += [('unsolicited_na', a, unsolicited_na_frame(a, owner, sender, router=owner != nic['mac']))
                       for a in nic['ipv6']]
        if not frames:
            continue
        times = [time.time()]
        if not check_mode:
            times = send(dev, [f[2] for f in frames], p['count'], p['interval_ms'] / 1000.0)
        for method, addr, _frame in frames:
            sent.append({'method': method, 'interface': dev, 'address': addr, 'sender': sender,
                         'count': p['count'], 'time': times[0]})
    # announcements change what the network believes: reported as changes (in check mode: would be sent)
    result = {'changed': bool(added) or bool(proxied) or bool(sent), 'sent': sent,
              'routes': {'added': added, 'removed': []}, 'proxy_ndp': {'added': proxied, 'removed': []},
              'interfaces': [{'mac': n['mac'], 'ipv4': n['ipv4'], 'ipv6': n['ipv6']} for n in nics]}
    result['discovery_notes'] = notes
    return result


def unconfirmed(nics, reported):
    """Given addresses the guest does not hold (pure): [(mac, address, what the guest reports)] for the
    NICs the guest reported on. REPORTED: {mac: {'ipv4', 'ipv6'}} (from the guest agent)."""
    out = []
    for nic in nics:
        got = reported.get(nic['mac'])
        if got is None:
            continue
        have = set(got.get('ipv4', []) + got.get('ipv6', []))
        out += [(nic['mac'], a, sorted(have)) for a in nic['ipv4'] + nic['ipv6'] if a not in have]
    return out


def check_against_agent(dom, nics):
    """Refuse addresses the guest agent says the VM does not hold on that NIC; without an agent, say so."""
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.typed import (  # pylint: disable=import-outside-toplevel
        LibvirtClientError, interface_addresses)
    try:
        reported = parse_libvirt_addresses(interface_addresses(dom, 'agent'))
    except LibvirtClientError as e:
        return ['addresses not checked against the guest (agent: %s)' % e.detail]
    wrong = unconfirmed(nics, reported)
    if wrong:
        raise AdvertiseError('; '.join('%s is not an address of the domain on %s (the guest agent reports: %s)'
                                       % (a, mac, ', '.join(have) or 'none') for mac, a, have in wrong)
                             + ' - advertising it would steal it from whoever holds it (check_guest_addresses=false '
                             'to send anyway)')
    return []


# ---------------------------------------------------------------------------------------------------
# Address discovery: guest agent, DHCP leases (through libvirt), and the host's neighbour table

def neighbour_entries(entries):
    """`ip -j neigh show` entries -> [(address, mac)] of the usable ones: failed and incomplete entries,
    link-local and multicast addresses (never routed, never moved) left out."""
    out = []
    for e in entries or []:
        mac = (e.get('lladdr') or '').lower()
        state = e.get('state') or []
        if not mac or 'FAILED' in state or 'INCOMPLETE' in state:
            continue
        try:
            a = ipaddress.ip_address(e.get('dst', ''))
        except ValueError:
            continue
        if not (a.is_link_local or a.is_multicast):
            out.append((a, mac))
    return out


def parse_neighbours(entries):
    """`ip -j neigh show` entries -> {mac: {'ipv4': [...], 'ipv6': [...]}}."""
    out = {}
    for a, mac in neighbour_entries(entries):
        fam = out.setdefault(mac, {'ipv4': [], 'ipv6': []})['ipv4' if a.version == 4 else 'ipv6']
        if str(a) not in fam:
            fam.append(str(a))
    return out


def read_neighbour_table(run_command):
    """This host's `ip -j neigh show`, parsed."""
    rc, out, err = run_command(['ip', '-j', 'neigh', 'show'])
    if rc != 0:
        raise AdvertiseError('cannot read the neighbour table: %s' % err.strip())
    try:
        return json.loads(out or '[]')
    except ValueError:
        raise AdvertiseError('cannot parse the neighbour table (ip -j neigh show)')


def host_neighbours(run_command):
    return parse_neighbours(read_neighbour_table(run_command))


def neighbour_macs(run_command):
    """{address: mac} of this host's usable neighbour entries."""
    return dict((str(a), mac) for a, mac in neighbour_entries(read_neighbour_table(run_command)))


def parse_libvirt_addresses(ifaces):
    """virDomainInterfaceAddresses' answer -> {mac: {'ipv4', 'ipv6'}} (link-local and loopback left out)."""
    out = {}
    for _name, info in (ifaces or {}).items():
        mac = (info.get('hwaddr') or '').lower()
        if not mac or mac == '00:00:00:00:00:00':
            continue
        for a in info.get('addrs') or []:
            try:
                addr = ipaddress.ip_address(a.get('addr', ''))
            except ValueError:
                continue
            if addr.is_link_local or addr.is_loopback:
                continue
            fam = out.setdefault(mac, {'ipv4': [], 'ipv6': []})['ipv4' if addr.version == 4 else 'ipv6']
            if str(addr) not in fam:
                fam.append(str(addr))
    return out


def merge_addresses(nics, found):
    """The domain's NICs with the addresses each source found: [{'mac', 'ipv4', 'ipv6', 'sources'}],
    one entry per NIC, in the domain's order. FOUND: [(source name, {mac: {'ipv4', 'ipv6'}})]."""
    out = []
    for nic in nics:
        entry = {'mac': nic['mac'], 'ipv4': [], 'ipv6': [], 'sources': []}
        for source, by_mac in found:
            got = by_mac.get(nic['mac'])
            if not got:
                continue
            added = False
            for fam in ('ipv4', 'ipv6'):
                for a in got.get(fam, []):
                    if a not in entry[fam]:
                        entry[fam].append(a)
                        added = True
            if added:
                entry['sources'].append(source)
        out.append(entry)
    return out


ADDRESS_SOURCES = ('agent', 'lease', 'neighbours')


def discover_addresses(client, dom, sources, run_command):
    """Addresses of the domain's NICs from each source asked for; a source that cannot answer (no
    guest agent, no libvirt network) is noted, not fatal. Returns (interfaces, notes)."""
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.typed import (  # pylint: disable=import-outside-toplevel
        LibvirtClientError, interface_addresses)
    found, notes = [], []
    for source in sources:
        if source == 'neighbours':
            found.append((source, host_neighbours(run_command)))
            continue
        try:
            found.append((source, parse_libvirt_addresses(interface_addresses(dom, source))))
        except LibvirtClientError as e:
            notes.append('%s: %s' % (source, e.detail))
    return merge_addresses(domain_nics(client, dom), found), notes


# ---------------------------------------------------------------------------------------------------
# Proxy NDP: Linux answers neighbour solicitations for another node's address only with a proxy entry

def proxy_entries(run_command, dev):
    rc, out, err = run_command(['ip', '-6', 'neigh', 'show', 'proxy', 'dev', dev])
    if rc != 0:
        raise AdvertiseError('cannot read proxy neighbour entries on %s: %s' % (dev, err.strip()))
    return set(str(ipaddress.ip_address(line.split()[0])) for line in out.splitlines() if line.strip())


# ---------------------------------------------------------------------------------------------------
# Verification: ICMP echo from a vantage point until the addresses answer

def echo_request(ident, seq, version=4, payload=b'vmmigration'):
    """An ICMP (or ICMPv6) echo request; the kernel fills the ICMPv6 checksum of raw ICMPv6 sockets."""
    kind = 8 if version == 4 else 128
    body = struct.pack('!BBHHH', kind, 0, 0, ident & 0xFFFF, seq & 0xFFFF) + payload
    if version == 4:
        body = body[:2] + struct.pack('!H', _checksum(body)) + body[4:]
    return body


def parse_echo_reply(data, version=4):
    """(ident, seq) of an echo reply (IPv4 raw sockets deliver the IP header too), else None."""
    if version == 4:
        if len(data) < 20:
            return None
        data = data[(bytearray(data)[0] & 0x0F) * 4:]
        kind = 0
    else:
        kind = 129
    if len(data) < 8 or bytearray(data)[0] != kind:
        return None
    _t, _c, _s, ident, seq = struct.unpack('!BBHHH', data[:8])
    return ident, seq


def wait_reachable(addresses, timeout_s, interval_s=0.05, clock=time.monotonic, sock_factory=None):
    """Send an echo to every address not answered yet, every INTERVAL_S, until all answered or the
    timeout. Returns {address: seconds to the first reply, or None}."""
    import os  # pylint: disable=import-outside-toplevel
    import select  # pylint: disable=import-outside-toplevel
    import threading  # pylint: disable=import-outside-toplevel
    targets = dict((str(ipaddress.ip_address(a)), ipaddress.ip_address(a).version) for a in addresses)
    factory = sock_factory or (lambda v: socket.socket(socket.AF_INET if v == 4 else socket.AF_INET6, socket.SOCK_RAW,
                                                       socket.IPPROTO_ICMP if v == 4 else socket.IPPROTO_ICMPV6))
    socks = {}
    try:
        for v in sorted(set(targets.values())):
            try:
                socks[v] = factory(v)
            except PermissionError:
                raise AdvertiseError('ICMP probes need root (CAP_NET_RAW): run the task with become: true')
        # (one ident per thread: a drain verifies several VMs at once, and raw sockets see every reply)
        ident = (os.getpid() ^ threading.get_ident()) & 0xFFFF
        seq_of = dict((a, i * 4096) for i, a in enumerate(sorted(targets)))
        sent_seq = {}
        answered = dict((a, None) for a in targets)
        start = clock()

        def send_round():
            """Echo every address not answered yet; True once all have answered."""
            if all(v is not None for v in answered.values()):
                return True
            for a, v in targets.items():
                if answered[a] is None:
                    seq_of[a] = (seq_of[a] + 1) & 0xFFFF
                    sent_seq[seq_of[a]] = a
                    try:
                        socks[v].sendto(echo_request(ident, seq_of[a], v), (a, 0))
                    except OSError:
                        pass  # no route (yet): try again at the next round
            return False

        def listen(seconds):
            """The wait between rounds: read replies for SECONDS (stopping early once all answered)."""
            end = clock() + seconds
            while any(v is None for v in answered.values()):
                left = end - clock()
                if left <= 0:
                    return
                for v, sock in socks.items():
                    if sock not in select.select([sock], [], [], 0)[0]:
                        continue
                    data, peer = sock.recvfrom(2048)
                    got = parse_echo_reply(data, v)
                    if got and got[0] == ident and sent_seq.get(got[1]) is not None:
                        a = sent_seq[got[1]]
                        if answered[a] is None and str(ipaddress.ip_address(peer[0].split('%')[0])) == a:
                            answered[a] = round(clock() - start, 3)
                select.select(list(socks.values()), [], [], max(0.0, min(left, 0.05)))
        wait_until(send_round, timeout_s, interval_s, clock, listen)
        return answered
    finally:
        for s in socks.values():
            s.close()
