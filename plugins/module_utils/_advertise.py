# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Post-migration IP advertisement: frame builders (pure), a raw-socket sender, QEMU's
announce-self command, and host-route move planning (pure).

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import ipaddress
import json
import socket
import struct
import time

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
    root = ET.fromstring(dom.XMLDesc(0))
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
