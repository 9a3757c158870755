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

ColdMigration checks and plans the move and runs it through its parts, which share one ColdMove (cold_move):
ColdCopy (cold_copy: what goes where, and the verified copy) and ColdCommit (cold_commit: define and start on
the destination, then commit or roll back).

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

import time

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide.checks import ALL, FAIL, relevant_disks
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.domain_xml import parse_domain
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.check_run import check_domains
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide.transport import TRANSPORT_ARGSPEC, plan_transport
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.storage_proof import reprove_shared
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.cold_commit import ColdCommit
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.cold_copy import ColdCopy
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.cold_move import ColdMigrationError, ColdMove


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


def _text(node):
    return node.text if node is not None else None


class ColdMigration:
    """One cold migration of one domain; construct, then call run(check_mode)."""

    def __init__(self, src, dst, name, opts, clock=time.monotonic, sleep=time.sleep):
        self.ctx = ColdMove(src, dst, name, opts, clock, sleep)   # what the parts share
        self.src, self.dst, self.name, self.o, self.result = src, dst, name, opts, self.ctx.result
        self.copier = ColdCopy(self.ctx)                           # what goes where, the verified copy
        self.committer = ColdCommit(self.ctx, self.copier)         # define, start, commit or roll back

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
                                   planned_mib=self.o.get('arriving_mib') or 0, allow_storage_copy=True, probe_storage=True)
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
            files = self.copier.plan_files(dom, facts, dom_report['storage'])
            space = self.copier.space(files)
            self.result['plan'] = {'shutdown': was_running, 'start_on_destination': start,
                                   'files': [dict(f) for f in files], 'space': space,
                                   'shared': [t for t, v in dom_report['storage'].items() if v['verdict'] == 'shared']}
            transport = plan_transport(self.o.get('tls'), self.o.get('allow_plaintext'),
                                       copies_over=[src.uri, dst.uri] if files else [])
            self.result['transport'] = dict((k, v) for k, v in transport.items() if k not in ('refused', 'tls'))
            if transport['refused']:
                raise ColdMigrationError('will not move %s (nothing was changed): %s' % (self.name, transport['refused']),
                                         self.result)
            problems = self.copier.problems(files, space)
            if problems:
                raise ColdMigrationError('cannot move %s (nothing was changed): %s' % (self.name, '; '.join(problems)),
                                         self.result)
            self.result['changed'] = True
            if check_mode:
                self.result['state'] = 'planned'
                return self.result
            return self.committer.move(dom, facts, files, was_running, start)
        finally:
            self.ctx.drop_transient()
