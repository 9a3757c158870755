# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The monitor loop of one live migration (a part of live.LiveMigration): start libvirt's migrate call,
poll the job at several Hz, apply the strategy's decisions while it runs (downtime steps, the switch to
post-copy, a pause, an abort, a post-copy interrupt), bound every wait, then hand the outcome to the commit
or the rollback.

This module is private to vmmigration.libvirt: its interface may change in any release.
"""

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import strategy as S
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import wait_until
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.live_shared import MigrationError


class MigrationMonitor:
    """Watches the migration job of ENGINE (a live.LiveMigration: its options, clients, clock, result and
    decisions, all read there) from its start to the end of libvirt's call."""

    def __init__(self, engine):
        self.engine = engine

    def watch_migration(self, dom, plan, storage, ram, deadline):
        o = self.engine.o
        flags, params = self.engine.flags_and_params(plan, storage)
        ramp = S.downtime_steps(o['max_downtime_ms'], o['downtime_steps'],
                                o['downtime_step_delay_s'] if o['downtime_step_delay_s'] is not None
                                else max(0.5, o['downtime_step_delay_s_per_gib'] * float(ram) / S.GIB),
                                start_ms=min(o['max_downtime_ms'], S.DOWNTIME_START_MS))
        cfg = {'plan': plan, 'ramp': ramp, 'deadline_s': deadline, 'hard_timeout_s': o['hard_timeout_s'],
               'stall_iterations': o['stall_iterations'], 'stall_window_s': o['dead_link_s'],
               'start_grace_s': self.engine.hang_s()}
        state = {'elapsed_s': 0.0, 'iteration': 0, 'history': self.engine.history, 'downtime_ms': 0,
                 'postcopy': False, 'final_taken': None, 'paused': False, 'postcopy_interrupted': False}
        uuid = dom.UUIDString()
        if self.engine.src.conn is not None and driver.events_running():
            try:
                driver.on_job_completed(self.engine.src.conn, dom, self.engine.events.append)
            except LibvirtClientError:
                pass
        self.engine.t0 = self.engine.clock()
        self.engine.note('start', 'flags %s' % self._flag_names(flags), plan['strategy'])
        self.engine.status({'domain': self.engine.name, 'phase': 'starting', 'elapsed_s': 0.0, 'percent': 0,
                            'decisions': self.engine.decisions[-5:]})
        thread, outcome = self.engine.call_migrate(dom, params, flags, 'migrate')
        last = {}
        # no wait without an end: the strategy aborts (or finishes) by the completion deadline or the hard
        # timeout; libvirt then gets twice hang_s to end the job before this stops waiting for it
        limit = self.wait_limit_s(deadline)

        def step():
            """One look at the job: True once the migration call returned (or was given up)."""
            if not thread.is_alive():
                return True
            state['elapsed_s'] = self.engine.clock() - self.engine.t0
            try:
                stats = driver.job_stats(dom)
            except LibvirtClientError:
                stats = {}
            if driver.job_running(stats):
                last.clear()
                last.update(stats)
                state['iteration'] = stats.get('memory_iteration')
                self.engine.history.append((round(state['elapsed_s'], 3), stats.get('memory_iteration'),
                                            stats.get('memory_remaining', stats.get('data_remaining', 0)),
                                            stats.get('data_processed')))
                action, arg, reason = S.decide(state, cfg)
                self.apply(dom, action, arg, reason, state)
            self.engine.status({
                'domain': self.engine.name, 'phase': 'postcopy' if state['postcopy'] else 'migrating',
                'elapsed_s': round(state['elapsed_s'], 2), 'percent': S.progress_percent(last),
                'iteration': last.get('memory_iteration'), 'data_remaining': last.get('data_remaining'),
                'data_processed': last.get('data_processed'), 'data_total': last.get('data_total'),
                'memory_bps': last.get('memory_bps'), 'downtime_ms': state['downtime_ms'],
                'decisions': self.engine.decisions[-5:]})
            if state['postcopy_interrupted'] and self.engine.clock() - state['interrupted_at'] > self.engine.hang_s():
                outcome['error'] = ('libvirt did not end the post-copy migration %d s after it was interrupted '
                                    '(its migration call still waits for the destination)' % self.engine.hang_s())
                return True
            return False
        # thread.join is the sleep: the wait ends as soon as the migration call returns
        if not wait_until(step, limit, o['poll_interval_s'], self.engine.clock, thread.join):
            self.give_up_waiting(dom, state, limit, outcome)
        wall = self.engine.clock() - self.engine.t0
        self.engine.result.setdefault('phases', {})['migration_s'] = round(wall, 3)
        self.engine.result['decisions'] = self.engine.decisions
        self.engine.result['total_time_s'] = round(wall, 3)
        self.engine.result['postcopy'] = state['postcopy']
        self.engine.result['paused'] = state['paused']
        if 'ok' not in outcome:
            error = outcome.get('error') or 'migration failed'
            if state.get('abort_reason'):
                error = 'aborted by the engine: %s (libvirt: %s)' % (state['abort_reason'], error)
            return self.engine.settle.rollback(dom, uuid, error, state)
        return self.engine.settle.commit(dom, uuid, state, last)

    def wait_limit_s(self, deadline):
        """Seconds after which the monitor stops waiting for the migration call, whatever happens."""
        return max(deadline, self.engine.o['hard_timeout_s'] or 0) + 2 * self.engine.hang_s()

    def give_up_waiting(self, dom, state, limit, outcome):
        """The migration call outlived every bound: stop waiting. A post-copy is never aborted (the guest runs
        on the destination, with pages still on the source): that is reported as it is; a pre-copy is aborted
        (the source still holds the whole guest) and rolled back by the caller."""
        self.engine.result.update(decisions=self.engine.decisions, total_time_s=round(self.engine.clock() - self.engine.t0, 3),
                                  postcopy=state['postcopy'], paused=state['paused'])
        if state['postcopy']:
            self.engine.note('gave_up', 'post-copy still running after %d s: no longer waiting; never aborted' % limit)
            self.engine.result['state'] = 'postcopy_running'
            raise MigrationError(
                'the post-copy migration of %s was still running after %d s: it is not aborted (the guest runs on '
                'the destination and still fetches pages from the source); do not destroy either side; libvirt '
                'finishes it - watch it with vmmigration.libvirt.migration_job_info' % (self.engine.name, limit),
                self.engine.result)
        try:
            driver.abort_job(dom)
        except LibvirtClientError as e:
            self.engine.note('abort', 'could not abort the job: %s' % e.detail)
        outcome['error'] = ('the migration job did not end within %d s (its completion deadline and the time '
                            'libvirt is given to end it): aborted' % limit)

    def apply(self, dom, action, arg, reason, state):
        if action == 'wait':
            return
        try:
            if action == 'set_downtime':
                driver.set_max_downtime(dom, arg)
                state['downtime_ms'] = int(arg)
            elif action == 'postcopy':
                state['postcopy'] = True
                state['final_taken'] = 'postcopy'
                driver.start_postcopy(dom)
            elif action == 'pause':
                state['final_taken'] = 'pause'
                dom.suspend()
                state['paused'] = True
                self.finish_paused(dom, state)
            elif action == 'abort':
                state['final_taken'] = 'abort'
                state['abort_reason'] = reason
                driver.abort_job(dom)
            elif action == 'postcopy_pause':
                state['postcopy_interrupted'] = True
                state['interrupted_at'] = self.engine.clock()
                problems = self.engine.feature_problems(['postcopy_interrupt'])
                if problems:
                    reason += ' - but %s: waiting for it' % '; '.join(problems)
                else:
                    driver.abort_job(dom, postcopy=True)
            self.engine.note(action, reason, arg)
        except LibvirtClientError as e:
            # a switch racing the end of the migration is harmless; anything else is reported
            self.engine.note(action, '%s (libvirt: %s)' % (reason, e.detail), arg)

    def finish_paused(self, dom, state):
        """The guest is paused and dirties nothing: allow a downtime that holds what is left, so that QEMU sends
        it at once in its switch-over (uncapped), not pass after pass at the bandwidth cap while the guest waits.
        A failure here leaves the pause in place (the migration still ends, at the cap's pace)."""
        try:
            driver.set_max_downtime(dom, S.PAUSED_DOWNTIME_MS)
            state['downtime_ms'] = S.PAUSED_DOWNTIME_MS
        except LibvirtClientError as e:
            self.engine.note('set_downtime', 'could not allow the paused guest a longer downtime (libvirt: %s)'
                             % e.detail, S.PAUSED_DOWNTIME_MS)

    @staticmethod
    def _flag_names(flags):
        return ','.join(sorted(flags))
