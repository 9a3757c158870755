# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Cold migration's copy: what goes where, and the verified copy.

ColdCopy plans every file a cold move copies (the disks not proven shared, UEFI NVRAM, TPM state) with its
destination path, reads what the copies need and what room there is, refuses a file the destination already has,
and copies one file through the two libvirt connections: a volume stream out of the source (sparse) into a file in
work_dir, streamed into a new volume on the destination, read back and compared by SHA-256, within a deadline.

This module is private to vmmigration.libvirt: its interface may change in any release.
"""

import hashlib
import os
import tempfile
import time
import xml.etree.ElementTree as ET

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide.checks import relevant_disks
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.storage_proof import (
    _pool_path,
    pool_for_dir,
    probe_directory,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.cold_move import ColdMigrationError

CHUNK = 1024 * 1024
ZEROS = b'\0' * CHUNK

# Room kept free on the destination pool and in work_dir beyond what a copy needs (filesystem
# metadata, a qcow2 that grows by a cluster while being written).
SPACE_MARGIN = 16 * 1024 * 1024


def copy_deadline_s(option, allocation):
    """Seconds one file's copy may take: the copy_timeout_s option, else 30 minutes or 1 s per 10 MiB the
    file occupies, whichever is longer (three passes - read, write, read back - at 30 MiB/s)."""
    if option:
        return option
    return max(DEFAULT_COPY_TIMEOUT_S, int(allocation // COPY_RATE_FLOOR))


DEFAULT_COPY_TIMEOUT_S = 1800
COPY_RATE_FLOOR = 10 * 1024 * 1024


def space_problems(needs, free):
    """NEEDS {place: bytes}, FREE {place: bytes or None}: a readable problem per place that lacks room
    (None: the free space could not be read - the copy would risk filling it up blind)."""
    problems = []
    for place in sorted(needs):
        have = free.get(place)
        if have is None:
            problems.append('cannot read the free space of %s' % place)
        elif needs[place] + SPACE_MARGIN > have:
            problems.append('%s needs %d MiB for the copies, has %d MiB free' % (
                place, -(-(needs[place] + SPACE_MARGIN) // 1048576), have // 1048576))
    return problems


class Deadline:
    """One copy's deadline: check() raises once CLOCK passes it."""

    def __init__(self, seconds, what, clock=time.monotonic):
        self.at, self.seconds, self.what, self.clock = clock() + seconds, seconds, what, clock

    def check(self):
        if self.clock() > self.at:
            raise CopyTimeout('%s did not finish within %d s (copy_timeout_s): aborted' % (self.what, self.seconds))


class CopyTimeout(Exception):
    pass


def hash_zeros(digest, length):
    while length > 0:
        n = min(length, CHUNK)
        digest.update(ZEROS[:n])
        length -= n


def _abort(stream):
    try:
        stream.abort()
    except LibvirtClientError:
        pass


def download(vol, conn, fd=None, deadline=None):
    """Stream a volume out (sparse); write it to FD (holes seeked over) if given; return its SHA-256
    over the logical content (holes hash as zeros) and the length. DEADLINE.check() runs per chunk."""
    digest = hashlib.sha256()
    state = {'len': 0}

    def on_data(stream, data, opaque):  # pylint: disable=unused-argument
        if deadline is not None:
            deadline.check()
        digest.update(data)
        state['len'] += len(data)
        if fd is not None:
            return os.write(fd, data)
        return len(data)

    def on_hole(stream, length, opaque):  # pylint: disable=unused-argument
        hash_zeros(digest, length)
        state['len'] += length
        if fd is not None:
            os.lseek(fd, length, os.SEEK_CUR)
        return 0

    stream = driver.download_stream(conn, vol)
    try:
        stream.sparseRecvAll(on_data, on_hole, None)
        stream.finish()
    except BaseException:
        _abort(stream)
        raise
    if fd is not None:
        os.ftruncate(fd, state['len'])
    return digest.hexdigest(), state['len']


def upload(vol, conn, fd, deadline=None):
    """Stream the sparse file FD into a volume. DEADLINE.check() runs per chunk."""
    def in_data(stream, opaque):  # pylint: disable=unused-argument
        cur = os.lseek(fd, 0, os.SEEK_CUR)
        try:
            data = os.lseek(fd, cur, os.SEEK_DATA)
        except OSError:
            end = os.lseek(fd, 0, os.SEEK_END)
            os.lseek(fd, cur, os.SEEK_SET)
            return [False, end - cur] if end > cur else [True, 0]
        if data > cur:
            os.lseek(fd, cur, os.SEEK_SET)
            return [False, data - cur]
        hole = os.lseek(fd, cur, os.SEEK_HOLE)
        os.lseek(fd, cur, os.SEEK_SET)
        return [True, hole - cur]

    def read(stream, nbytes, opaque):  # pylint: disable=unused-argument
        if deadline is not None:
            deadline.check()
        return os.read(fd, nbytes)

    def skip(stream, length, opaque):  # pylint: disable=unused-argument
        os.lseek(fd, length, os.SEEK_CUR)
        return 0

    os.lseek(fd, 0, os.SEEK_SET)
    stream = driver.upload_stream(conn, vol)
    try:
        stream.sparseSendAll(read, in_data, skip, None)
        stream.finish()
    except BaseException:
        _abort(stream)
        raise


class ColdCopy:
    """The copy part of one cold move (its ColdMove shared with the commit): plan_files and space before anything
    changes, problems (what refuses the move), then copy(f) per file."""

    def __init__(self, move):
        self.move = move
        self.src, self.dst, self.o, self.result = move.src, move.dst, move.o, move.result
        self.clock, self.step, self.created = move.clock, move.step, move.created
        self._pool, self._volume = move.pool, move.volume

    # -- planning ------------------------------------------------------------------------------
    def plan_files(self, dom, facts, storage):
        """Every file to copy: disks not proven shared, NVRAM, TPM state; with destination paths."""
        files = []
        for d in relevant_disks(facts['disks']):
            verdict = (storage.get(d['target']) or {}).get('verdict')
            if verdict == 'shared':
                continue
            if d['type'] not in ('file', 'volume'):
                raise ColdMigrationError('disk %s (%s) is not proven shared and cannot be copied by volume streams'
                                         % (d['target'], d['type']), self.result)
            path = d['source']
            if d['type'] == 'volume':
                path = self.src.conn.storagePoolLookupByName(d['pool']).storageVolLookupByName(d['volume']).path()
            files.append({'kind': 'disk', 'target': d['target'], 'source': path})
        if facts.get('nvram'):
            shared = self._same_file_visible(facts['nvram'])
            if not shared:
                files.append({'kind': 'nvram', 'target': 'nvram', 'source': facts['nvram']})
        if facts.get('tpm'):
            files += self.tpm_files(facts['uuid'])
        for f in files:
            f['dest'] = self.dest_path(f['source'], f['kind'])
        return files

    def tpm_files(self, uuid):
        """The emulated TPM's state files (libvirt keeps them per domain UUID and TPM version). A TPM that
        never ran has none yet; state that exists but cannot be read stops the move: a destination
        without it would start with a new TPM, and whatever the guest sealed to the old one is lost."""
        files = []
        for version_dir in ('tpm2', 'tpm1.2'):
            path = '/var/lib/libvirt/swtpm/%s/%s' % (uuid, version_dir)
            try:
                pool = self._pool(self.src, path, create=True)
                vols = pool.listAllVolumes(0)
            except LibvirtClientError as e:
                if 'No such file' in (e.detail or ''):
                    continue
                raise ColdMigrationError('cannot read the TPM state in %s: %s' % (path, e.detail),
                                         self.result)
            files += [{'kind': 'tpm', 'target': 'tpm', 'source': v.path()} for v in vols
                      if driver.volume_is_file(v) and not v.name().startswith('.')]
        if not files:
            self.step('tpm', 'the TPM has no state yet (never started): the destination makes it on first start')
        return files

    def _same_file_visible(self, path):
        return probe_directory(self.src, self.dst, os.path.dirname(path))[0] == 'shared'

    def dest_path(self, source, kind):
        directory, base = os.path.split(source)
        if kind == 'disk' and self.o.get('dest_pool'):
            try:
                pool = self.dst.conn.storagePoolLookupByName(self.o['dest_pool'])
            except LibvirtClientError:
                raise ColdMigrationError('no storage pool named %s on the destination' % self.o['dest_pool'],
                                         self.result)
            return os.path.join(_pool_path(pool), base)
        return os.path.join(directory, base)

    def space(self, files):
        """What the copies need and what there is, before anything changes: per destination directory
        the bytes the source volumes occupy (a sparse copy takes no more), and in work_dir the largest
        one (copies pass through it one at a time)."""
        needs, free = {}, {}
        for f in files:
            src_dir, base = os.path.split(f['source'])
            f['allocation'] = self.src.call('cannot read the size of %s' % f['source'],
                                            lambda d=src_dir, b=base: self._pool(self.src, d).storageVolLookupByName(b)
                                            .info()[2])
            place = 'the destination directory %s' % os.path.dirname(f['dest'])
            needs[place] = needs.get(place, 0) + f['allocation']
            if place not in free:
                free[place] = self._free_bytes(os.path.dirname(f['dest']))
        if files:
            place = 'work_dir %s on this host' % self.o['work_dir']
            needs[place] = max(f['allocation'] for f in files)
            try:
                st = os.statvfs(self.o['work_dir'])
                free[place] = st.f_bavail * st.f_frsize
            except OSError:
                free[place] = None
        return {'needs': needs, 'free': free}

    def problems(self, files, space):
        """What refuses the move before anything changes: files the destination already has, too little room."""
        problems = self.already_there(files)
        room = space_problems(space['needs'], space['free'])
        if room:
            problems.append('not enough room for its copies: %s' % '; '.join(room))
        return problems

    def already_there(self, files):
        """Files the move would write that the destination already has (never overwritten), before anything
        changes; a directory the destination does not have yet holds none."""
        problems = []
        for f in files:
            directory, base = os.path.split(f['dest'])
            try:
                pool, transient = pool_for_dir(self.dst, directory, create=True, build=False)
            except LibvirtClientError:
                continue
            if transient:
                self.move.transient.append(pool)
            if self._volume(pool, base) is not None:
                problems.append('the destination already has %s: refusing to overwrite it (remove it there if it is '
                                'stale, or give dest_pool)' % f['dest'])
        return problems

    def _free_bytes(self, path):
        """Free bytes where PATH is (or will be) on the destination, changing nothing there: the pool over
        PATH, else over its nearest existing parent (a directory the move would create); None if unreadable."""
        while True:
            try:
                pool, transient = pool_for_dir(self.dst, path, create=True, build=False)
                if transient:
                    self.move.transient.append(pool)
                return pool.info()[3]
            except LibvirtClientError:
                parent = os.path.dirname(path)
                if parent == path:
                    return None
                path = parent

    def copy(self, f):
        src_dir, base = os.path.split(f['source'])
        dst_dir, dst_base = os.path.split(f['dest'])
        src_pool = self._pool(self.src, src_dir)
        vol = src_pool.storageVolLookupByName(base)
        info = vol.info()
        fmt = ET.fromstring(driver.definition(vol)).find('./target/format')
        fmt = fmt.get('type') if fmt is not None else 'raw'
        dst_pool = self._pool(self.dst, dst_dir)
        if self._volume(dst_pool, dst_base) is not None:
            raise ColdMigrationError('the destination already has %s: refusing to overwrite it (nothing of it was '
                                     'changed; remove it there if it is stale, or give dest_pool)' % f['dest'],
                                     self.result)
        vol_xml = ("<volume><name>%s</name><capacity unit='bytes'>%d</capacity><allocation>0</allocation>"
                   "<target><format type='%s'/></target></volume>" % (dst_base, info[1], fmt))
        # (recorded before the call: a volume whose creation reply was lost is still ours to remove)
        self.created.append((dst_dir, dst_base))
        new = dst_pool.createXML(vol_xml, 0)
        t0 = self.clock()
        deadline = Deadline(copy_deadline_s(self.o.get('copy_timeout_s'), f.get('allocation') or info[2]),
                            'the copy of %s' % f['source'], self.clock)
        fd, tmp = tempfile.mkstemp(prefix='vmm-cold-', dir=self.o['work_dir'])
        try:
            digest, length = download(vol, self.src.conn, fd, deadline)
            upload(new, self.dst.conn, fd, deadline)
        finally:
            os.close(fd)
            os.unlink(tmp)
        f['sha256'] = digest
        f['bytes'] = length
        if self.o['verify']:
            check, _length = download(new, self.dst.conn, None, deadline)
            if check != digest:
                raise ColdMigrationError('checksum mismatch after copying %s to %s' % (f['source'], f['dest']),
                                         self.result)
            f['verified'] = True
        f['seconds'] = round(self.clock() - t0, 3)
        self.step('copy', '%s -> %s (%d bytes, sha256 %s%s)' % (f['source'], f['dest'], length, digest[:16],
                                                                ', verified' if f.get('verified') else ''))
