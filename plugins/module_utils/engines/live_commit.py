# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The end of one live migration (a part of live.LiveMigration): the commit (the destination confirmed
running before the source definition goes) or the rollback (the guest keeps running on the source, nothing
left on the destination) - after both hosts were read back, since a failed migrate call may have finished
in libvirt, its reply lost. A failed post-copy is never rolled back: it goes to the post-copy recovery.

This module is private to vmmigration.libvirt: its interface may change in any release.
"""

import time

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import strategy as S
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import (
    UNKNOWN_SAID,
    LibvirtClientError,
    domain_state,
    read_back,
    resumed_after_a_failed_migration,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import wait_until
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.live_shared import MigrationError


class CommitRollback:
    """Commits or rolls back the move of ENGINE (a live.LiveMigration: its options, clients, clock, result
    and decisions, all read there) once libvirt's migrate call has returned."""

    def __init__(self, engine):
        self.engine = engine

    def completed_stats(self, dom):
        """The completed job's statistics: from the job-completed event, else libvirt's record (1 s at most)."""
        def stats():
            if self.engine.events:
                return dict(self.engine.events[-1])
            try:
                found = driver.job_stats(dom, completed=True)
            except LibvirtClientError:
                return None
            return found if driver.job_kind(found) == 'completed' else None
        return wait_until(stats, 1.0, 0.05, self.engine.clock, self.engine.sleep) or {}

    def commit(self, dom, uuid, state, last):
        """Destination confirmed running before the source definition is removed."""
        o = self.engine.o
        mark = self.engine.clock()
        stats = self.completed_stats(dom)
        seen = {'dom': None, 'errors': []}

        def up():
            del seen['errors'][:]
            seen['dom'] = self.engine.domain_on_destination(uuid, seen['errors'])
            seen['state'] = (domain_state(seen['dom']) if seen['dom'] is not None
                             else 'unknown' if seen['errors'] else 'gone')
            return seen['state'] in ('running', 'paused')
        wait_until(up, 15, 0.1, self.engine.clock, self.engine.sleep)
        there, dst_state = seen['dom'], seen['state']
        resume_error = []
        if dst_state == 'paused' and (state['paused'] or state.get('final_taken') == 'pause'):
            # (paused to finish - also when the pause took effect and its reply was lost)
            there, dst_state = self._resume_on_destination(there, uuid, resume_error)
        self.engine.result['stats'] = S.summarize(stats or last)
        self._figures(stats or last)
        if dst_state == 'unknown':
            self.engine.result['state'] = 'destination_unknown'
            raise MigrationError(
                '%s migrated (the source ended the job) but the destination cannot be reached to confirm that it '
                'runs there (%s)%s; the source definition was kept - do not start it there' % (
                    self.engine.name, '; '.join(seen['errors']) or 'its state cannot be read',
                    '; it was paused to finish: resume it on the destination (virsh resume %s) once that answers'
                    % self.engine.name if state['paused'] else ''), self.engine.result)
        if dst_state != 'running' and not (dst_state == 'paused' and not self.engine.started_running):
            # (a guest its owner had paused before the move is rightly paused there)
            self.engine.result['state'] = 'destination_not_running'
            raise MigrationError('%s migrated but is %s on the destination%s; the source definition was kept'
                                 % (self.engine.name, dst_state, ' (it was paused to finish and could not be resumed: '
                                    '%s - resume it there now: virsh resume %s)' % (resume_error[-1], self.engine.name)
                                    if resume_error else ''), self.engine.result)
        self.engine.note('committed', 'destination runs %s' % self.engine.name)
        # wall-clock time the guest was confirmed running on the destination (for the time to network
        # convergence measured elsewhere, e.g. by ip_reachable's since)
        self.engine.result['running_on_destination_at'] = round(time.time(), 3)
        self.engine.result['state'] = 'migrated'
        self.engine.phase('commit_s', mark)
        if o['undefine_source']:
            try:
                if dom.isPersistent() and not dom.isActive():
                    driver.undefine(dom, nvram='keep')
                    self.engine.note('undefine_source', 'source definition removed after the commit')
            except LibvirtClientError as e:
                # past the commit point nothing is rolled back: say where the guest is and what is left
                self.engine.note('undefine_source', 'could not remove the source definition: %s' % e.detail)
                self.engine.result['source_cleanup_failed'] = True
                raise MigrationError(
                    'moved %s: it runs on the destination %s; source cleanup failed: could not remove its inactive '
                    'definition on the source (%s) - remove it there (virsh undefine %s) before anything starts '
                    'it again' % (self.engine.name, self.engine.dst.uri, e.detail, self.engine.name),
                    self.engine.result)
        self.engine.status({'domain': self.engine.name, 'phase': 'done', 'result': self._short()})
        return self.engine.result

    def _resume_retrying(self, client, dom, find, errors):
        """Resume DOM (paused to finish a move); a failed call, a dropped connection included, is tried again
        for 10 s (FIND looks the domain up again on a new connection). Returns (resumed?, domain); ERRORS
        gets why it failed."""
        seen = {'dom': dom}

        def resumed():
            if seen['dom'] is None:
                seen['dom'] = find()
                if seen['dom'] is None:
                    return False
            try:
                seen['dom'].resume()
                return True
            except LibvirtClientError as e:
                errors.append(e.detail)
                if domain_state(seen['dom']) == 'running':
                    return True
                if e.transient:
                    client.reset()
                    seen['dom'] = None
                return False
        ok = wait_until(resumed, 10, 0.5, self.engine.clock, self.engine.sleep)
        return bool(ok), seen['dom'] or dom

    def _resume_on_destination(self, there, uuid, errors):
        """Resume on the destination a guest paused to finish its move: (domain, its state)."""
        ok, there = self._resume_retrying(self.engine.dst, there,
                                          lambda: self.engine.domain_on_destination(uuid, errors), errors)
        self.engine.note('resume', 'the guest was paused to finish: resumed on the destination' if ok else
                         'could not resume the guest on the destination: %s' % errors[-1])
        return there, domain_state(there)

    def _find_on_source(self, errors):
        try:
            return self.engine.src.lookup(self.engine.name)
        except LibvirtClientError as e:
            errors.append(e.msg)
            return None

    def rollback(self, dom, uuid, error, state):
        """The guest keeps running on the source; nothing is left on the destination."""
        self.engine.note('failed', error)
        self.engine.result['stats'] = S.summarize(self.completed_stats(dom) if not state['postcopy'] else {})
        if state['postcopy']:
            # Never roll back a post-copy: the destination runs the guest and holds memory the source lacks. It
            # may also have finished, its reply lost: read both sides back first.
            _there, dst_state = self._read_back(self.engine.dst, uuid, [])
            again, src_state = self._read_back(self.engine.src, uuid, [])
            if dst_state == 'running' and src_state in ('shutoff', 'gone', 'unknown'):
                return self._moved_anyway(again or dom, uuid, error, src_state, state)
            self.engine.result['state'] = 'postcopy_failed'
            recovered, how = self.engine.postcopy.recover(dom)
            if recovered:
                self.engine.result['recovered_from'] = error
                self.engine.result['total_time_s'] = round(self.engine.clock() - self.engine.t0, 3)
                self.commit(dom, uuid, state, {})
                self.engine.result['state'] = 'migrated_after_recovery'
                return self.engine.result
            raise MigrationError('post-copy migration of %s failed (%s); %s' % (self.engine.name, error, how),
                                 self.engine.result)
        # Nothing is resumed here before the destination has been asked: libvirt may have finished the job
        # although our call failed (its reply lost), and the destination may then run the guest on the same
        # disks. Both sides are read back, each on a new connection if its own was lost.
        dst_errors, src_errors = [], []
        there, dst_state = self._read_back(self.engine.dst, uuid, dst_errors)
        again, src_state = self._read_back(self.engine.src, uuid, src_errors)
        dom = again or dom
        if dst_state == 'running' or (dst_state == 'paused' and src_state in ('shutoff', 'gone')):
            # the job finished in libvirt although our call failed: the guest is on the destination - a move,
            # not a rollback
            return self._moved_anyway(dom, uuid, error, src_state, state)
        if dst_state == 'unknown' and src_state != 'running' or src_state == 'unknown' and dst_state != 'gone':
            return self._unknown(error, src_state, dst_state, src_errors + dst_errors)
        if src_state == 'paused':
            errors = []
            ok, dom = self._resume_retrying(self.engine.src, dom, lambda: self._find_on_source(errors), errors)
            self.engine.note('resume', 'source guest resumed after the failed migration (the destination does not '
                             'run it: %s)' % dst_state if ok else 'could not resume the source guest: %s' % errors[-1])
            src_state = domain_state(dom)
        cleaned, may_run_there = None, False
        if dst_state == 'unknown':
            cleaned, may_run_there = self._unchecked_destination(dom, state, dst_errors[-1])
            self.engine.note('cleanup', cleaned)
        if there is not None and src_state == 'running':
            try:
                if there.isActive():
                    there.destroy()
                if there.isPersistent():
                    there.undefine()
                cleaned = 'removed the half-migrated copy from the destination'
            except LibvirtClientError as e:
                cleaned = 'could not remove the half-migrated copy from the destination: %s' % e.detail
            self.engine.note('cleanup', cleaned)
        # (a guest running on the source again whose destination may run it too is not said to be rolled back)
        self.engine.result['state'] = ('source_%s' % src_state if src_state != 'running' else
                                       'rolled_back_unconfirmed' if may_run_there else 'rolled_back')
        self.engine.result['changed'] = src_state != 'running' or may_run_there
        where = ('its state on the source cannot be read (the connection to the source is lost): check it there'
                 if src_state == 'unknown' else 'the guest is %s on the source' % src_state)
        raise MigrationError('live migration of %s failed: %s; %s%s' % (
            self.engine.name, error, where, '' if not cleaned else '; ' + cleaned), self.engine.result)

    def _unchecked_destination(self, dom, state, why):
        """What is known of the destination's copy when the destination cannot be read (the source runs the guest).
        A pre-copy whose source never stopped the guest sent the destination no final state: what is there cannot
        run, and libvirt removes it once its connection from the source is gone. libvirt marks a guest it resumes
        after a failed migration that had stopped it (running reason 'migration canceled'), and the mark stays until
        the guest is paused again: a guest without it now was not stopped by this move (one that carries it from an
        earlier move is judged as stopped). Anything else may have finished there (its reply lost): said as a copy
        that could not be checked. Returns (what is said, whether the destination may run the guest)."""
        marked = resumed_after_a_failed_migration(dom)
        if not state['postcopy'] and not state['paused'] and marked is False:
            return ('the destination could not be checked (%s), but the source never stopped the guest in this move: '
                    'a copy there never had its final state and cannot run (libvirt removes an incoming guest once '
                    'its connection from the source is gone)' % why), False
        if marked:
            return ('could not check the destination for a copy (%s): the source had stopped the guest for the '
                    'switch-over and libvirt resumed it - if the destination finished and its reply was lost, it runs '
                    'the guest too: check with virsh list --all there before anything else' % why), True
        return ('could not check the destination for a half-migrated copy (%s): libvirt removes an incoming '
                'guest whose migration failed; check with virsh list --all there before anything else' % why), True

    def _read_back(self, client, uuid, errors):
        return read_back(client, uuid, errors, self.engine.clock, self.engine.sleep)

    def _moved_anyway(self, dom, uuid, error, src_state, state):
        """The migration call failed, but the destination has the guest and the source QEMU does not run it: the
        move is committed as usual (a source libvirt left paused after a lost reply is stopped first: the
        destination was confirmed to run the guest)."""
        name = self.engine.name
        self.engine.note('committed', 'the destination has %s although the migration call failed (%s)' % (name, error))
        self.engine.result['recovered_from'] = error
        if src_state == 'paused':
            try:
                dom.destroy()
                self.engine.note('cleanup', 'stopped the paused source QEMU: the destination runs the guest')
            except LibvirtClientError as e:
                self._moved_but_source_left(error, 'the source still holds a paused copy that could not be stopped '
                                            '(%s) - destroy it there (virsh destroy %s, then virsh undefine %s); never '
                                            'resume it' % (e.detail, name, name))
        if src_state == 'unknown':
            self._moved_but_source_left(error, 'its state on the source cannot be read - check there that it is not '
                                        'running and remove its inactive definition (virsh undefine %s) before '
                                        'anything starts it again' % name)
        # (a destination left paused is resumed when the guest ran before the move - paused to finish, or the job
        # ended paused; a guest its owner had paused stays paused)
        self.commit(dom, uuid, dict(state, paused=state['paused'] or self.engine.started_running), {})
        return self.engine.result

    def _moved_but_source_left(self, error, left):
        """The guest runs on the destination although the migration call failed; LEFT says what the source keeps."""
        self.engine.result.update(state='migrated', changed=True, source_cleanup_failed=True,
                                  running_on_destination_at=round(time.time(), 3))
        raise MigrationError('moved %s: it runs on the destination %s (libvirt finished the job although our call '
                             'failed: %s); source cleanup failed: %s'
                             % (self.engine.name, self.engine.dst.uri, error, left), self.engine.result)

    def _unknown(self, error, src_state, dst_state, errors):
        """Where the guest runs cannot be confirmed: nothing is resumed or removed, and the operator is told
        what to check."""
        self.engine.note('unknown', 'source %s, destination %s: nothing resumed' % (src_state, dst_state))
        self.engine.result.update(state='unknown', changed=True, source_state=src_state, destination_state=dst_state)
        raise MigrationError(
            'live migration of %s failed (%s) and where the guest runs cannot be confirmed: on the source it is %s, '
            'on the destination %s%s. Nothing was resumed or removed: %s until both hosts have been checked '
            '(virsh domstate %s on each; a paused copy whose peer runs the guest is stale - destroy it, never '
            'resume it)' % (self.engine.name, error, src_state, dst_state,
                            ' (%s)' % errors[-1] if errors else '', UNKNOWN_SAID, self.engine.name), self.engine.result)

    def _figures(self, stats):
        result = self.engine.result
        result['downtime_ms'] = stats.get('downtime')
        result['bytes_transferred'] = stats.get('data_processed')
        result['iterations'] = stats.get('memory_iteration')
        result['postcopy_requests'] = stats.get('memory_postcopy_requests')
        bps = stats.get('memory_bps')
        result['bandwidth_mibps'] = round(bps / float(S.MIB), 1) if bps else None
        result['dirty_rate_mibps'] = (result.get('plan') or {}).get('dirty_rate_mibps')
        pages, page = stats.get('memory_dirty_rate'), stats.get('memory_page_size') or 4096
        if result['dirty_rate_mibps'] is None and pages is not None:
            # not sampled before the move (link speed unknown): the rate the migration measured
            result['dirty_rate_mibps'] = round(pages * page / float(S.MIB), 1)

    def _short(self):
        return {k: self.engine.result.get(k) for k in ('total_time_s', 'downtime_ms', 'bytes_transferred',
                                                       'iterations', 'postcopy', 'paused')}
