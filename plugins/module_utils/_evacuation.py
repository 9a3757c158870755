# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The evacuation plan: checks of every VM against every destination, then _planner's placement
and schedule. One connection per host for the whole plan.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

from ansible_collections.vmmigration.libvirt.plugins.module_utils import _planner as P
from ansible_collections.vmmigration.libvirt.plugins.module_utils._checks import FAIL, recommend
from ansible_collections.vmmigration.libvirt.plugins.module_utils._precheck import check_domains

LIVE_METHODS = ('live', 'live_copy_storage', 'offline')


def group_of(anti_affinity):
    out = {}
    for group, members in (anti_affinity or {}).items():
        for vm in members or []:
            out[vm] = group
    return out


def plan_evacuation(cache, p):
    src = cache.get(p['uri'])
    names = p.get('domains')
    if not names:
        names = sorted(d.name() for d in src.call('cannot list domains', src.conn.listAllDomains, 0)
                       if d.isActive())
    groups = group_of(p.get('anti_affinity'))
    per_vm = dict((n, {'memory_mib': 0, 'allowed': [], 'method': {}, 'refused': {}}) for n in names)
    hosts = []
    for dest in p['destinations']:
        dst = cache.get(dest['uri'])
        # memory is placed by the planner: the per-destination check must not count it
        report = check_domains(src, dst, names, reserve_mib=0, planned_mib=0, allow_storage_copy=True,
                               probe_storage=True)
        if report['destination'] is None:
            for n in names:
                per_vm[n]['refused'][dest['name']] = ['destination unreachable']
            continue
        hosts.append({'name': dest['name'], 'free_mib': report['destination']['memory_free'] / (1024 * 1024),
                      'capacity_mib': report['destination']['memory_total'] / (1024 * 1024),
                      'groups': []})
        for r in report['domains']:
            info = per_vm[r['name']]
            info['memory_mib'] = r['memory_mib'] or 0
            # memory is the planner's business (it counts what it places): judge the rest
            others = [c for c in r['checks'] if c['check'] != 'memory']
            copy_needed = any(v.get('verdict') != 'shared' for v in (r.get('storage') or {}).values())
            method = r['recommended'] if r['recommended'] == 'already_there' else \
                recommend(others, r['active'], copy_needed)
            if method == 'cold' and not p.get('allow_cold'):
                method = 'none'
            failing = [c['reason'] for c in r['checks'] if c['status'] == FAIL and c['check'] != 'memory']
            if method in LIVE_METHODS or method == 'cold':
                info['allowed'].append(dest['name'])
                info['method'][dest['name']] = method
            else:
                info['refused'][dest['name']] = failing or ['recommended: %s' % r['recommended']]
    vms = []
    for n in names:
        info = per_vm[n]
        vm = {'name': n, 'memory_mib': info['memory_mib'], 'allowed': info['allowed'], 'group': groups.get(n),
              'pinned': (p.get('pinned') or {}).get(n)}
        if not info['allowed']:
            vm['method'] = 'none'
            vm['reason'] = '; '.join('%s: %s' % (d, ', '.join(r)) for d, r in sorted(info['refused'].items()))
        vms.append(vm)
    placed = P.place(vms, hosts, headroom_mib=p.get('headroom_mib', 0))
    moves = [{'name': n, 'source': 'source', 'dest': d, 'memory_mib': per_vm[n]['memory_mib']}
             for n, d in sorted(placed['placements'].items())]
    timeline, makespan = P.schedule(moves, p['rate_mibps'], p['max_outbound'], p['max_inbound'], p['max_total'])
    out_moves = []
    for t in timeline:
        out_moves.append({'name': t['name'], 'destination': t['dest'], 'method': per_vm[t['name']]['method'][t['dest']],
                          'memory_mib': per_vm[t['name']]['memory_mib'], 'start_s': t['start_s'], 'end_s': t['end_s']})
    return {'moves': out_moves, 'left': placed['unplaced'], 'predicted_total_s': makespan,
            'refused': dict((n, per_vm[n]['refused']) for n in names if per_vm[n]['refused']),
            'free_after_mib': placed['free_after']}
