# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How many hosts a rolling run takes out at once (batch: auto), from the cluster plan of each size tried.

A size is tried by planning its steps' drains together (decide.cluster.plan_run) and asking whether they can run at
once (orchestration.rolling.batch_conflicts). Pure; private to vmmigration.libvirt: may change in any release.
"""

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import checks as C
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide.cluster import plan_options, plan_run
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import rolling as RO


def auto_batch(reads, answers, hosts, p=None, records=None, destinations=None, exclude_domains=(), most=None,
               non_live_policy='skip', stops=None, drained=None):
    """rolling_maintenance_batch auto (pure): the most HOSTS out at once whose every step the cluster absorbs.

    HOSTS: the hosts to maintain, in the run's order, grouped as the run groups them (RECORDS {host: run record}: a
    host left half done is a step of its own, first - rolling.candidate_batches); DRAINED: those whose drain runs
    (default all: the others are no step's load). A size fits when each step of that many hosts has every VM placed
    on the hosts outside it, each destination keeping its headroom under all of the step's drains, no two VMs of an
    anti-affinity group on one host, no destination receiving from more drains than its inbound limit has slots
    (rolling.batch_conflicts on the step's drains planned together, as the run plans them). From the largest
    (MOST, default every host but one) down, a size whose steps' VMs outweigh the free memory outside them (less
    the headroom of each host there) is passed over without planning; below that the size is doubled from two while
    it fits, then bisected - each size tried is one cluster plan - to one that fits with one more that does not. Returns {'batch': n (1 when no
    larger size fits), 'tried': [{'size', 'fits', 'why'}] largest first, 'lines'}."""
    p = plan_options(p)
    drained = set(hosts if drained is None else drained)
    receivers = [d for d in (destinations if destinations is not None else sorted(reads)) if d in reads]
    excluded = set(exclude_domains or ())
    headroom = float(p.get('headroom_mib') or 0)
    need = dict((h, sum(C.kib_to_mib(vm['memory_kib']) for vm in reads[h].get('domains') or []
                        if vm.get('active') and vm['name'] not in excluded)) for h in reads)
    free = dict((h, reads[h]['host']['memory_free'] / (1024.0 * 1024)) for h in reads)
    top = len(hosts) - 1 if most is None else min(int(most), len(hosts) - 1)
    tried = []

    def steps_of(size):
        return [s for s in ([h for h in c if h in drained and h in reads]
                            for c in RO.candidate_batches(list(hosts), records or {}, size)) if s]

    def too_heavy(steps):
        why = []
        for step in steps:
            outside = [d for d in receivers if d not in step]
            room = sum(max(0.0, free[d] - headroom) for d in outside)
            if not outside or sum(need[h] for h in step) > room:
                why.append('%s: %.0f MiB of VMs, %.0f MiB free outside them beside the headroom' % (
                    ' + '.join(step), sum(need[h] for h in step), room))
        return why

    def conflicts(steps):
        joint = [s for s in steps if len(s) > 1]
        plans = plan_run(reads, answers, joint, p, destinations=receivers, exclude_domains=exclude_domains,
                         return_vms='original')['plans']
        why = []
        for step in joint:
            why += ['%s: %s' % (' + '.join(step), w) for w in RO.batch_conflicts(
                step, dict((h, plans.get(h)) for h in step), non_live_policy, p.get('anti_affinity'), stops=stops)]
        return why

    # the largest size whose steps' VMs fit in the memory outside them (no plan made: a sum per step) ...
    hi = top
    while hi > 1:
        why = too_heavy(steps_of(hi))
        if not why:
            break
        tried.append({'size': hi, 'fits': False, 'why': why[:5]})
        hi -= 1

    # ... then the largest size up to it whose steps the plan takes at once: doubled from two while it fits, then
    # bisected (a size that fits and one more that does not; a few cluster plans, not one per size - the answer is
    # most often far below the memory bound, the destinations' inbound slots binding first)
    def fits(size):
        why = conflicts(steps_of(size))
        tried.append({'size': size, 'fits': not why, 'why': why[:5]})
        return not why

    lo, size = 1, 2
    while size <= hi and fits(size):
        lo, size = size, size * 2
    hi = min(hi, size - 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    tried.sort(key=lambda t: -t['size'])
    batch = lo
    lines = ['batch auto: %s' % ('%d hosts out at once' % batch if batch > 1 else 'one host at a time')]
    over = [t for t in tried if not t['fits'] and t['size'] == batch + 1]
    if over:
        lines.append('  %d at once does not fit - %s' % (over[0]['size'], '; '.join(over[0]['why'][:3])))
    return {'batch': batch, 'tried': tried, 'lines': lines}
