# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared-storage proof: does the destination see the *same* storage, not a same-named copy?

File-backed disks: a uniquely named marker volume of a random size is created next to the disk on
the source through libvirt (in the storage pool that covers the disk's directory, or a transient
one), then looked for, with its size, in the same directory on the destination through libvirt.
Found: ``shared``. The directory exists but the marker is not there: ``not_shared`` (the
same-path-but-separate trap). The directory does not exist: ``not_shared``. The marker and any
transient pool are removed in every case, also when the probe fails.

Network disks (nbd, rbd, iscsi, gluster, ...): libvirt treats them as shared; the probe confirms the
storage server answers on its address from where the probe runs (run it on the destination to prove
the destination reaches it). Block devices cannot be proven by a marker: ``unknown``.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

import os
import random
import socket
import threading
import uuid
import xml.etree.ElementTree as ET

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError

DEFAULT_PORTS = {'nbd': 10809, 'iscsi': 3260, 'rbd': 6789, 'gluster': 24007, 'sheepdog': 7000, 'http': 80,
                 'https': 443, 'ftp': 21, 'ssh': 22, 'vxhs': 9999, 'nfs': 2049}
MARKER_PREFIX = 'vmm-probe-'
# One proof at a time in this process: a drain checks several moves at once, and two proofs of one directory without
# a pool of its own would share the transient pool the first made (libvirt allows one pool per directory), which it
# destroys under the second.
_PROOF = threading.Lock()


def finding(target, disk, state, method, reason):
    return {'target': target, 'type': disk.get('type'), 'source': disk.get('source'),
            'protocol': disk.get('protocol'), 'verdict': state, 'method': method, 'reason': reason}


def _pool_path(pool):
    return ET.fromstring(driver.definition(pool)).findtext('./target/path')


def pool_for_dir(client, path, create=True, build=False):
    """(pool, transient?) for an active pool whose target is PATH (refreshed); else a transient one if
    allowed (BUILD: make the directory if it is missing). Raises libvirt's error when that fails."""
    for pool in client.conn.listAllStoragePools(0):
        try:
            if pool.isActive() and os.path.normpath(_pool_path(pool) or '') == os.path.normpath(path):
                pool.refresh(0)
                return pool, False
        except LibvirtClientError:
            continue
    if not create:
        return None, False
    xml = ("<pool type='dir'><name>%s%s</name><target><path>%s</path></target></pool>"
           % (MARKER_PREFIX, uuid.uuid4().hex[:12], path))
    return driver.pool_create(client.conn, xml, build), True


class _Dir:
    """A storage pool over one directory on one host: an existing active one, or a transient one."""

    def __init__(self, client, path):
        self.client = client
        self.path = path
        self.pool = None
        self.transient = False

    def open(self):
        """Returns None when the directory is usable, else the reason it is not."""
        try:
            self.pool, self.transient = pool_for_dir(self.client, self.path)
        except LibvirtClientError as e:
            return e.detail
        return None

    def close(self):
        if self.pool is not None and self.transient:
            try:
                self.pool.destroy()
            except LibvirtClientError:
                pass
        elif self.pool is not None:
            try:
                self.pool.refresh(0)
            except LibvirtClientError:
                pass
        self.pool = None


def probe_directory(src_client, dst_client, path, rand=random.randint):
    """Prove whether SRC and DST see the same directory PATH: (verdict, reason). One proof at a time (_PROOF)."""
    with _PROOF:
        return _probe_directory(src_client, dst_client, path, rand)


def _probe_directory(src_client, dst_client, path, rand):
    src, dst = _Dir(src_client, path), _Dir(dst_client, path)
    marker = None
    try:
        err = src.open()
        if err:
            return 'unknown', 'cannot open %s on the source: %s' % (path, err)
        name = '%s%s.marker' % (MARKER_PREFIX, uuid.uuid4().hex)
        size = 512 * rand(1, 4095)
        vol_xml = ("<volume><name>%s</name><capacity unit='bytes'>%d</capacity><allocation>0</allocation>"
                   "<target><format type='raw'/></target></volume>" % (name, size))
        try:
            marker = src.pool.createXML(vol_xml, 0)
        except LibvirtClientError as e:
            return 'unknown', 'cannot write a marker in %s on the source: %s' % (path, e.detail)
        err = dst.open()
        if err:
            return 'not_shared', '%s is not usable on the destination: %s' % (path, err)
        try:
            seen = dst.pool.storageVolLookupByName(name)
            seen_size = seen.info()[1]
        except LibvirtClientError:
            return 'not_shared', ('same path, different storage: a marker written in %s on the source is not '
                                  'there on the destination' % path)
        if seen_size != size:
            return 'not_shared', 'a marker of %d bytes shows %d bytes on the destination' % (size, seen_size)
        return 'shared', 'a marker written in %s on the source was seen on the destination' % path
    finally:
        if marker is not None:
            try:
                marker.delete(0)
            except LibvirtClientError:
                pass
        src.close()
        dst.close()


def reprove_shared(src_client, dst_client, disks, verdicts):
    """A plan approved earlier said these file disks are shared (VERDICTS {target: verdict}): prove it again
    now, with one marker per directory, before a move relies on it (a share unmounted since, or a stale file
    left at the same path on the destination, would become the guest's disk). Returns a problem per disk
    that is no longer proven shared."""
    problems, seen = [], {}
    for d in disks or []:
        if verdicts.get(d.get('target')) != 'shared' or d.get('type') != 'file' or not d.get('source'):
            continue
        directory = os.path.dirname(d['source'])
        if directory not in seen:
            seen[directory] = probe_directory(src_client, dst_client, directory)
        found, reason = seen[directory]
        if found != 'shared':
            problems.append('disk %s (%s) was shared when the plan was approved and is not proven shared now: %s'
                            % (d['target'], d['source'], reason))
    return problems


def probe_network(disk, connect=socket.create_connection, timeout=3.0):
    hosts = disk.get('hosts') or []
    if not hosts:
        return 'unknown', 'network disk without a host to reach'
    reached, failed = [], []
    for h in hosts:
        if h.get('socket') or h.get('transport') == 'unix':
            reached.append('unix socket %s (not checked)' % h.get('socket'))
            continue
        port = h.get('port') or DEFAULT_PORTS.get(disk.get('protocol'), 0)
        try:
            connect((h['name'], port), timeout).close()
            reached.append('%s:%s' % (h['name'], port))
        except (OSError, socket.timeout) as e:
            failed.append('%s:%s (%s)' % (h['name'], port, e))
    if failed:
        return 'not_shared', 'the %s server does not answer from %s: %s' % (
            disk.get('protocol'), socket.gethostname(), ', '.join(failed))
    return 'shared', 'network disk (%s); the server answers from %s: %s' % (
        disk.get('protocol'), socket.gethostname(), ', '.join(reached))


def _volume_path(client, disk):
    try:
        pool = client.conn.storagePoolLookupByName(disk['pool'])
        return pool.storageVolLookupByName(disk['volume']).path()
    except LibvirtClientError:
        return None


def probe_disks(src_client, dst_client, disks, connect=socket.create_connection):
    """Per disk (by target): verdict shared | not_shared | unknown, how it was decided, and why."""
    out = {}
    dir_cache = {}
    for disk in disks:
        target = disk.get('target')
        kind = disk.get('type')
        if kind == 'network':
            state, reason = probe_network(disk, connect=connect)
            out[target] = finding(target, disk, state, 'network', reason)
            continue
        path = disk.get('source')
        if kind == 'volume':
            path = _volume_path(src_client, disk)
            if not path:
                out[target] = finding(target, disk, 'unknown', 'volume', 'volume %s/%s not found on the source'
                                      % (disk.get('pool'), disk.get('volume')))
                continue
        if kind in ('file', 'volume') and path:
            directory = os.path.dirname(path)
            if directory not in dir_cache:
                dir_cache[directory] = probe_directory(src_client, dst_client, directory)
            state, reason = dir_cache[directory]
            out[target] = finding(target, disk, state, 'marker', reason)
        elif kind == 'block':
            out[target] = finding(target, disk, 'unknown', 'none',
                                  'block device %s: a marker cannot prove it is the same LUN' % path)
        elif not path:
            continue
        else:
            out[target] = finding(target, disk, 'unknown', 'none', 'disk type %s is not probed' % kind)
    return out
