# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The post-copy recovery of one live migration (a part of live.LiveMigration): a failed post-copy (the
guest's memory split between both hosts) is never destroyed or rolled back but resumed to the same
destination (libvirt 8.5+), retried while the link comes back, each resume call watched for a hang. Also
the run that finds a post-copy failed earlier and resumes it.

This module is private to vmmigration.libvirt: its interface may change in any release.
"""

from urllib.parse import urlparse

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import (
    LibvirtClientError,
    libvirtd_address as peer_address,
    reachable,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import wait_until
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.live_shared import MigrationError, host_facts


def libvirtd_address(src_uri, dest_uri):
    """(host, port) of the destination's libvirtd when the source libvirtd is local (so a TCP probe from
    here says what the source libvirtd would see); None when unknown or not meaningful."""
    return None if urlparse(src_uri or '').hostname else peer_address(dest_uri)


class PostcopyRecovery:
    """Resumes the failed post-copy of ENGINE (a live.LiveMigration: its options, clients, clock, transport,
    result and decisions, all read there)."""

    def __init__(self, engine):
        self.engine = engine

    def resume(self, dom, check_mode):
        """A post-copy migration that failed earlier (the source guest is paused, post-copy failed): resume
        it to the same destination; the only way forward, since both hosts hold part of the guest."""
        self.engine.require_features(['postcopy_resume'])
        self.engine.result.update(changed=True, destination=host_facts(self.engine.dst),
                                  plan={'strategy': 'postcopy_resume',
                                        'reason': 'an earlier post-copy migration of this guest failed; resuming it'})
        if check_mode:
            self.engine.result['state'] = 'planned'
            return self.engine.result
        self.engine.t0 = self.engine.clock()
        state = {'postcopy': True, 'paused': False}
        self.engine.note('start', 'resuming the failed post-copy migration', 'postcopy_resume')
        recovered, how = self.recover(dom)
        self.engine.result.update(decisions=self.engine.decisions,
                                  total_time_s=round(self.engine.clock() - self.engine.t0, 3),
                                  postcopy=True, paused=False)
        if not recovered:
            self.engine.result['state'] = 'postcopy_failed'
            raise MigrationError('resuming the post-copy migration of %s failed; %s' % (self.engine.name, how),
                                 self.engine.result)
        self.engine.settle.commit(dom, dom.UUIDString(), state, {})
        self.engine.result['state'] = 'migrated_after_recovery'
        return self.engine.result

    def _resume_once(self, dom, params, flags):
        """One resume call, watched: None when it finished, else the libvirt error or why it was given up
        (no byte moved for hang_s seconds: the destination QEMU can block for good - its main loop waits for
        a page that is still on the source while libvirt asks it to recover)."""
        thread, outcome = self.engine.call_migrate(dom, params, flags, 'resume')
        seen = {'last': None, 'moved_at': self.engine.clock()}

        def step():
            if not thread.is_alive():
                return 'ended'
            try:
                processed = driver.job_stats(dom).get('data_processed')
            except LibvirtClientError:
                processed = None
            if processed is not None and processed != seen['last']:
                seen['last'], seen['moved_at'] = processed, self.engine.clock()
            return 'hung' if self.engine.clock() - seen['moved_at'] > self.engine.hang_s() else None
        how = wait_until(step, self.resume_limit_s(), self.engine.o['poll_interval_s'], self.engine.clock, thread.join)
        if how == 'hung':
            return ('hung', 'the resume moved no data for %d s: the destination QEMU looks blocked (a thread '
                    'holding its main lock waits for a page that is still on the source, so it cannot '
                    'take the recovery request)' % self.engine.hang_s())
        if how is None:
            return ('hung', 'the resume was still running after %d s: no longer waiting for it (libvirt keeps '
                    'the job)' % self.resume_limit_s())
        return None if 'ok' in outcome else ('error', outcome.get('error', 'resume failed'))

    def resume_limit_s(self):
        """Seconds one post-copy resume call is watched at most (it normally ends long before)."""
        return max(self.engine.o['hard_timeout_s'] or 0, 1800) + self.engine.hang_s()

    def resume_params(self):
        """The parameters a post-copy resume needs again: the migration address and post-copy cap."""
        o, params = self.engine.o, {}
        if o['migration_uri']:
            params['uri'] = o['migration_uri']
        if o.get('postcopy_bandwidth_mibps'):
            params['bandwidth_postcopy'] = int(o['postcopy_bandwidth_mibps'])
        return params

    def recover(self, dom):
        """Resume a failed post-copy migration (libvirt 8.5+), retrying while the link comes back: waits of
        2, 4, 8, then 15 s between attempts. Returns (recovered, what to tell the operator)."""
        engine = self.engine
        problems = engine.feature_problems(['postcopy_resume'])
        if problems:
            return False, ('%s: the guest state is split between the hosts; do not destroy either side'
                           % '; '.join(problems))
        flags = {'live', 'postcopy', 'postcopy_resume', 'persist_dest'}
        if (engine.transport or {}).get('tls'):
            flags.add('tls')    # the resumed stream is encrypted like the move it resumes
        if engine.o['p2p']:
            flags.add('peer2peer')
        params = self.resume_params()
        attempts = engine.o['postcopy_recovery_attempts']
        # a connection to a destination behind a dead link hangs in TCP connect for minutes: probe first
        address = libvirtd_address(getattr(engine.src, 'uri', None), engine.o['dest_uri']) if engine.o['p2p'] else None
        for attempt in range(attempts):
            engine.status({
                'domain': engine.name, 'phase': 'postcopy_recovery', 'attempt': attempt + 1, 'attempts': attempts,
                'elapsed_s': round(engine.clock() - engine.t0, 2), 'decisions': engine.decisions[-5:]})
            if address and not reachable(address):
                engine.note('postcopy_resume', 'post-copy recovery %d of %d: the destination libvirtd (%s port %d) '
                            'does not answer yet' % ((attempt + 1, attempts) + address))
            else:
                failure = self._resume_once(dom, params, flags)
                if failure is None:
                    engine.note('postcopy_resume', 'post-copy recovery %d succeeded' % (attempt + 1))
                    return True, 'recovered: the guest runs on the destination'
                engine.note('postcopy_resume', 'post-copy recovery %d of %d failed: %s'
                            % (attempt + 1, attempts, failure[1]))
                if failure[0] == 'hung':
                    return False, ('recovery hung: %s. Do not destroy either side while the destination may still '
                                   'get its pages; libvirt keeps the resume job open' % failure[1])
            if attempt + 1 < attempts:
                engine.sleep(min(15, 2 ** (attempt + 1)))
        return False, ('recovery failed after %d attempts: the guest is paused with its memory split between '
                       'both hosts; do not destroy either side; restore the network and run virsh migrate '
                       '--postcopy --postcopy-resume (or this module again)' % attempts)
