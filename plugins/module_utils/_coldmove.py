# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Cold migration: shut down, copy what is not shared through libvirt volume streams (sparse,
verified by SHA-256), move NVRAM and TPM state, define on the destination (paths rewritten where
the destination's layout differs), start there, and only then remove the source.

Any failure before the commit point (the guest defined, and running if it ran, on the
destination) removes what was created on the destination and restarts the guest on the source.
No trust between the hypervisors is needed: everything goes through the two libvirt connections.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

import hashlib
import os
import tempfile
import time
import xml.etree.ElementTree as ET

from ansible_collections.vmmigration.libvirt.plugins.module_utils._checks import ALL, FAIL, relevant_disks
from ansible_collections.vmmigration.libvirt.plugins.module_utils import _driver as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils._client import (
    UNKNOWN_SAID,
    LibvirtClientError,
    domain_state,
    read_back,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils._domain import parse_domain
from ansible_collections.vmmigration.libvirt.plugins.module_utils._power import shut_down
from ansible_collections.vmmigration.libvirt.plugins.module_utils._precheck import check_domains
from ansible_collections.vmmigration.libvirt.plugins.module_utils._security import TRANSPORT_ARGSPEC, plan_transport
from ansible_collections.vmmigration.libvirt.plugins.module_utils._storage import (
    _pool_path,
    pool_for_dir,
    probe_directory,
    reprove_shared,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils._wait import wait_until

CHUNK = 1024 * 1024
ZEROS = b'\0' * CHUNK


# the cold_migrate module's options but domain, dest_uri and the connection (the evacuation reuses them)
COLD_ARGSPEC = dict(
    dest_pool=dict(type='str'),
    shutdown_timeout_s=dict(type='float', default=120),
    force=dict(type='bool', default=False),
    start=dict(type='str', choices=['auto', 'always', 'never'], default='auto'),
    keep_source_disks=dict(type='bool', default=False),
    verify=dict(type='bool', default=True),
    headroom_mib=dict(type='int', default=1024),
    work_dir=dict(type='path', default='/var/tmp'),
    copy_timeout_s=dict(type='float'),
)
COLD_ARGSPEC.update(TRANSPORT_ARGSPEC)
# what a drain sets itself in each cold move (its own headroom_mib): not in cold_options
COLD_SET_BY_THE_DRAIN = ('headroom_mib',)

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


class ColdMigrationError(LibvirtClientError):
    def __init__(self, msg, result=None):
        super().__init__(msg)
        self.result = result or {}


class Unconfirmed(Exception):
    """A call on the destination whose outcome cannot be read back: whether it runs the guest is not known."""


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


def _text(node):
    return node.text if node is not None else None


class ColdMigration:
    """One cold migration of one domain; construct, then call run(check_mode)."""

    def __init__(self, src, dst, name, opts, clock=time.monotonic, sleep=time.sleep):
        self.src, self.dst, self.name, self.o = src, dst, name, opts
        self.clock, self.sleep = clock, sleep
        self.steps = []
        self.created = []          # (directory, name) of each volume made (or asked for) on the destination
        self.transient = []        # transient pools to destroy at the end
        self.defined = None        # the definition made on the destination
        self.define_asked = False  # defineXML was called (its reply may have been lost)
        self.restarted = False     # the rollback saw the guest running on the source again
        self.result = {'domain': name, 'changed': False}
        self.t0 = clock()

    def step(self, action, detail):
        self.steps.append({'t': round(self.clock() - self.t0, 3), 'action': action, 'detail': detail})

    def _pool(self, client, path, create=True):
        pool, transient = pool_for_dir(client, path, create, build=client is self.dst)
        if transient:
            self.transient.append(pool)
        return pool

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

    # -- the move ----------------------------------------------------------------------------------
    def run(self, check_mode=False):
        src, dst = self.src, self.dst
        dom = src.lookup(self.name)
        if dom is None:
            there = dst.lookup(self.name)
            if there is not None:
                self.result.update(state='already_there', msg='%s is not on the source and is defined on the '
                                   'destination' % self.name)
                return self.result
            raise ColdMigrationError('no domain named %s on %s' % (self.name, src.uri), self.result)
        if not dom.isPersistent():
            raise ColdMigrationError('%s is transient: only persistent domains can be cold-migrated' % self.name,
                                     self.result)
        was_running = bool(dom.isActive())
        start = self.o['start'] == 'always' or (self.o['start'] == 'auto' and was_running)
        if self.o.get('approved') is not None:
            # a drain's approved plan: checked when it was made and revalidated when the drain started
            dom_report = {'checks': [{'check': 'approved_plan', 'status': 'pass', 'blocks': ALL, 'reason':
                                      'checked when the plan was made, revalidated when the drain started'}],
                          'storage': dict((t, {'verdict': v}) for t, v in (self.o['approved'].get('storage') or {}).items())}
        else:
            report = check_domains(src, dst, [self.name], reserve_mib=self.o['headroom_mib'],
                                   allow_storage_copy=True, probe_storage=True)
            dom_report = report['domains'][0]
        self.result['checks'] = dom_report['checks']
        hard = [c for c in dom_report['checks'] if c['status'] == FAIL and c['blocks'] == ALL
                and (start or c['check'] != 'memory')]
        if hard:
            raise ColdMigrationError('cannot move %s: %s' % (self.name, '; '.join(c['reason'] for c in hard)),
                                     self.result)
        facts = parse_domain(driver.definition(dom, inactive=True))
        if self.o.get('approved') is not None:
            changed = reprove_shared(src, dst, relevant_disks(facts['disks']), self.o['approved'].get('storage') or {})
            if changed:
                raise ColdMigrationError('will not move %s (nothing was changed): %s' % (self.name, '; '.join(changed)),
                                         self.result)
        try:
            files = self.plan_files(dom, facts, dom_report['storage'])
            space = self.space(files)
            self.result['plan'] = {'shutdown': was_running, 'start_on_destination': start,
                                   'files': [dict(f) for f in files], 'space': space,
                                   'shared': [t for t, v in dom_report['storage'].items() if v['verdict'] == 'shared']}
            transport = plan_transport(self.o.get('tls'), self.o.get('allow_plaintext'),
                                       copies_over=[src.uri, dst.uri] if files else [])
            self.result['transport'] = dict((k, v) for k, v in transport.items() if k not in ('refused', 'tls'))
            if transport['refused']:
                raise ColdMigrationError('will not move %s (nothing was changed): %s' % (self.name, transport['refused']),
                                         self.result)
            problems = self.already_there(files)
            room = space_problems(space['needs'], space['free'])
            if room:
                problems.append('not enough room for its copies: %s' % '; '.join(room))
            if problems:
                raise ColdMigrationError('cannot move %s (nothing was changed): %s' % (self.name, '; '.join(problems)),
                                         self.result)
            self.result['changed'] = True
            if check_mode:
                self.result['state'] = 'planned'
                return self.result
            return self.move(dom, facts, files, was_running, start)
        finally:
            self._drop_transient()

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
                self.transient.append(pool)
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
                    self.transient.append(pool)
                return pool.info()[3]
            except LibvirtClientError:
                parent = os.path.dirname(path)
                if parent == path:
                    return None
                path = parent

    def shutdown(self, dom):
        """The collection's one shutdown policy (_power.shut_down): ACPI pressed every 5 s, powered off only with
        force."""
        timeout = self.o['shutdown_timeout_s']
        done, stuck = shut_down({self.name: dom}, timeout, self.o['force'], self.clock, sleep=self.sleep)
        if stuck:
            raise ColdMigrationError('%s did not shut down within %d s (force=true powers it off)'
                                     % (self.name, timeout), self.result)
        if done[self.name]['how'] == 'clean':
            self.step('shutdown', 'guest shut down')
        else:
            self.step('shutdown', 'powered off after %d s without a clean shutdown (force)' % timeout)

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

    @staticmethod
    def _volume(pool, name):
        """The volume NAME of POOL, None when the pool has none (any other failure is raised)."""
        return driver.volume(pool, name)

    def _start_on_destination(self, uuid):
        """Start the guest defined on the destination. A failed start is read back before it counts as one:
        its reply may have been lost after the guest started."""
        try:
            self.defined.create()
        except LibvirtClientError as e:
            errors = []
            there, state = read_back(self.dst, uuid, errors, self.clock, self.sleep)
            if state == 'running':
                self.defined = there
                self.step('start', 'the start call failed (%s), but read back the destination runs it' % e.detail)
                return
            if state == 'unknown':
                raise Unconfirmed('starting it on the destination failed (%s) and the destination cannot be asked '
                                  'whether it runs it (%s)' % (e.detail, errors[-1] if errors else 'no answer'))
            raise

    def dest_xml(self, dom, files):
        root = ET.fromstring(driver.definition(dom, inactive=True, secure=True))
        moved = dict((f['source'], f['dest']) for f in files)
        for disk in root.findall('./devices/disk'):
            src = disk.find('source')
            if src is not None and src.get('file') in moved:
                src.set('file', moved[src.get('file')])
        nvram = root.find('./os/nvram')
        if nvram is not None and nvram.text in moved:
            nvram.text = moved[nvram.text]
        return ET.tostring(root, encoding='unicode')

    def move(self, dom, facts, files, was_running, start):
        src = self.src
        uuid = facts['uuid']
        try:
            if was_running:
                self.shutdown(dom)
            for f in files:
                self.copy(f)
            self.define_asked = True
            self.defined = self.dst.conn.defineXML(self.dest_xml(dom, files))
            self.step('define', 'defined on the destination')
            if start:
                self._start_on_destination(uuid)
                self.result['running_on_destination_at'] = round(time.time(), 3)
                self.step('start', 'started on the destination')
        except Unconfirmed as e:
            self._unconfirmed(str(e), was_running)
        except (LibvirtClientError, CopyTimeout, OSError, RuntimeError) as e:
            # (RuntimeError: libvirt-python's sparse stream helpers raise it when a handler fails)
            msg = e.msg if isinstance(e, LibvirtClientError) else str(e)
            if not self.rollback(dom, was_running, uuid):
                self._unconfirmed(msg, was_running)
            self.result['steps'] = self.steps
            self.result['changed'] = False
            self.result['state'] = 'rolled_back'
            where = 'the guest runs on the source again' if was_running else 'the guest is still defined on the source'
            source = 'running' if self.restarted or not was_running else self._source_state(uuid)
            if source != 'running':
                # (the rollback's steps say why the restart failed)
                self.result.update(state='stopped_on_source', changed=True)
                where = ('the guest is defined on the source with its disks but could not be started there again (%s)%s: '
                         'start it (virsh start %s)' % (
                             self.steps[-1]['detail'], '' if source != 'unknown' else
                             ' and the source cannot be read now to see whether it runs - check virsh domstate %s there first'
                             % self.name, self.name))
            raise ColdMigrationError('cold migration of %s failed: %s; %s' % (self.name, msg, where), self.result)
        # commit point passed: the destination has the guest (running if it ran)
        self.step('committed', 'destination has %s%s' % (self.name, ' running' if start else ''))
        try:
            driver.undefine(dom, nvram='remove' if any(f['kind'] == 'nvram' for f in files) else 'keep')
        except LibvirtClientError as e:
            # past the commit point nothing is rolled back: say where the guest is and what is left to do
            self.step('undefine_source', 'could not remove the source definition: %s' % e.detail)
            self.result.update(state='migrated', steps=self.steps, copied=files, removed_from_source=[],
                               source_cleanup_failed=True, total_time_s=round(self.clock() - self.t0, 3),
                               bytes_copied=sum(f.get('bytes', 0) for f in files))
            raise ColdMigrationError(
                'moved %s: it is defined%s on the destination %s; source cleanup failed: could not remove its '
                'definition on the source (%s) - remove it there (virsh undefine %s) before anything starts '
                'it again; its disks on the source were kept' % (
                    self.name, ' and running' if start else '', self.dst.uri, e.detail, self.name), self.result)
        self.step('undefine_source', 'source definition removed')
        removed = []
        if not self.o['keep_source_disks']:
            for f in files:
                if f['kind'] != 'disk':
                    continue
                try:
                    pool = self._pool(src, os.path.dirname(f['source']))
                    pool.storageVolLookupByName(os.path.basename(f['source'])).delete(0)
                    removed.append(f['source'])
                except LibvirtClientError as e:
                    self.step('cleanup', 'could not remove %s: %s' % (f['source'], e.detail))
        if removed:
            self.step('cleanup', 'removed from the source: %s' % ', '.join(removed))
        self.result.update(state='migrated', steps=self.steps, copied=files, removed_from_source=removed,
                           total_time_s=round(self.clock() - self.t0, 3),
                           bytes_copied=sum(f.get('bytes', 0) for f in files))
        return self.result

    def _unconfirmed(self, msg, was_running):
        """Whether the destination has (or runs) the guest cannot be read back: nothing is restarted or removed."""
        self.step('unknown', 'the destination cannot be asked whether it has the guest: nothing restarted here')
        self.result.update(steps=self.steps, changed=True, state='unknown')
        raise ColdMigrationError(
            'cold migration of %s failed: %s; whether the destination %s has it running cannot be confirmed, so it '
            'was not started again on the source (it is %s on the source, with its disks): %s until the destination has '
            'been checked (virsh domstate %s there; if it runs there, the move is done - remove the source '
            'definition; if not, remove it there and start it here)' % (
                self.name, msg, self.dst.uri, 'shut off' if was_running else 'defined', UNKNOWN_SAID, self.name),
            self.result)

    def rollback(self, dom, was_running, uuid):
        """Undo what was made on the destination, then start the guest here again if it ran. Returns False
        (and changes nothing more) when the destination cannot be asked whether it has the guest."""
        if self.define_asked:
            # read back: the definition's (or the start's) reply may have been lost
            errors = []
            there, state = read_back(self.dst, uuid, errors, self.clock, self.sleep)
            if state == 'unknown':
                self.step('rollback', 'cannot ask the destination whether it has the guest: %s'
                          % (errors[-1] if errors else 'no answer'))
                return False
            if there is not None:
                try:
                    if there.isActive():
                        there.destroy()
                    driver.undefine(there, nvram='keep')
                    self.step('rollback', 'removed the definition from the destination')
                except LibvirtClientError as e:
                    self.step('rollback', 'could not remove the destination definition: %s' % e.detail)
                    if domain_state(there) not in ('shutoff', 'gone'):
                        return False
        for directory, name in reversed(self.created):
            path = os.path.join(directory, name)
            try:
                vol = self._volume(self._pool(self.dst, directory), name)
                if vol is not None:
                    vol.delete(0)
                    self.step('rollback', 'removed %s from the destination' % path)
            except LibvirtClientError as e:
                self.step('rollback', 'could not remove the copy %s: %s' % (path, e.detail))
        if was_running and self._source_state(uuid) != 'running':
            self._restart_on_source(dom)
        return True

    def _source_state(self, uuid):
        """Where the guest stands on the source, read back (a lost connection is opened anew, for up to 30 s):
        running, shutoff, ... or 'unknown'."""
        errors = []
        _dom, state = read_back(self.src, uuid, errors, self.clock, self.sleep)
        return state

    def _restart_on_source(self, dom):
        """Start the guest on the source again; a lost connection is opened anew, for up to 30 s. A start whose
        reply was lost is seen running at the next attempt (never started twice, never reported as failed)."""
        errors = []
        seen = {'dom': dom}

        def started():
            try:
                if seen['dom'] is None:
                    seen['dom'] = self.src.lookup(self.name)
                if seen['dom'].isActive():
                    return True
                seen['dom'].create()
                return True
            except LibvirtClientError as e:
                errors.append(e.detail)
                if e.transient:
                    self.src.reset()
                    seen['dom'] = None
                return False
        if wait_until(started, 30, 2, self.clock, self.sleep):
            self.restarted = True
            self.step('rollback', 'restarted the guest on the source')
        else:
            self.step('rollback', 'could not restart the guest on the source: %s' % errors[-1])

    def _drop_transient(self):
        for pool in self.transient:
            try:
                pool.destroy()
            except LibvirtClientError:
                pass
        self.transient = []
