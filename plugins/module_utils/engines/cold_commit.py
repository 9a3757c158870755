# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Cold migration's commit: the guest shut down, its files copied (ColdCopy), defined and started on the
destination - then either the commit (past that point the source definition and, unless kept, its copied disks
are removed) or the rollback (what was made on the destination removed, the guest started on the source again).

A call on the destination whose outcome is lost is read back before it counts: when the destination cannot be
asked whether it has (or runs) the guest, nothing is restarted or removed, and the error says what to check.

This module is private to vmmigration.libvirt: its interface may change in any release.
"""

import os
import time
import xml.etree.ElementTree as ET

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import (
    UNKNOWN_SAID,
    LibvirtClientError,
    domain_state,
    read_back,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import wait_until
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.cold_copy import CopyTimeout
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.cold_move import ColdMigrationError
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.power import shut_down


class Unconfirmed(Exception):
    """A call on the destination whose outcome cannot be read back: whether it runs the guest is not known."""


class ColdCommit:
    """The commit part of one cold move (its ColdMove shared with COPIER, the ColdCopy that copies the files):
    move() runs it from the shutdown to the guest on one host."""

    def __init__(self, move, copier):
        self.copier = copier
        self.src, self.dst, self.name, self.o, self.result = move.src, move.dst, move.name, move.o, move.result
        self.clock, self.sleep, self.steps, self.t0, self.step = move.clock, move.sleep, move.steps, move.t0, move.step
        self.created, self._pool, self._volume = move.created, move.pool, move.volume
        self.defined = None        # the definition made on the destination
        self.define_asked = False  # defineXML was called (its reply may have been lost)
        self.restarted = False     # the rollback saw the guest running on the source again

    def shutdown(self, dom):
        """The collection's one shutdown policy (power.shut_down): ACPI pressed every 5 s, powered off only with
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
                self.copier.copy(f)
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
