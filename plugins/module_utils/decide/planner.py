# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Evacuation planning as pure functions: where each VM goes, in which order, and how long it takes.

Placement: operator pins first, then the largest VMs first, each on the allowed host with the most
free memory left (a heap, so 10,000 VMs over 1,000 hosts plan in well under a second), keeping a
memory headroom per host and never putting two VMs of one anti-affinity group on one host.
Scheduling: list scheduling, longest first, under outbound-per-source, inbound-per-destination and
global concurrency limits, each migration taking memory / rate (+ a fixed overhead).

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

import heapq


def place(vms, hosts, headroom_mib=0):
    """Place VMS on HOSTS.

    VMS: [{'name', 'memory_mib', 'group' (anti-affinity, optional), 'pinned' (host, optional),
    'allowed' (host names, optional: all), 'method' (optional: 'none' means it cannot move)}].
    HOSTS: [{'name', 'free_mib', 'groups' (anti-affinity groups already there, optional)}].
    Returns {'placements': {vm: host}, 'unplaced': {vm: reason}, 'free_after': {host: mib}}.
    """
    free = dict((h['name'], float(h['free_mib']) - headroom_mib) for h in hosts)
    groups = dict((h['name'], set(h.get('groups') or ())) for h in hosts)
    placements, unplaced = {}, {}

    def fits(vm, host):
        if host not in free:
            return 'unknown host %s' % host
        if vm.get('allowed') is not None and host not in vm['allowed']:
            return 'not compatible with %s' % host
        if vm.get('group') and vm['group'] in groups[host]:
            return 'anti-affinity group %s already on %s' % (vm['group'], host)
        if free[host] < vm['memory_mib']:
            return 'not enough memory on %s (%d MiB free after headroom, needs %d)' % (
                host, free[host], vm['memory_mib'])
        return None

    def put(vm, host):
        placements[vm['name']] = host
        free[host] -= vm['memory_mib']
        if vm.get('group'):
            groups[host].add(vm['group'])

    movable = []
    for vm in vms:
        if vm.get('method') == 'none':
            unplaced[vm['name']] = vm.get('reason') or 'cannot move'
        elif vm.get('pinned'):
            why = fits(vm, vm['pinned'])
            if why:
                unplaced[vm['name']] = 'pinned to %s: %s' % (vm['pinned'], why)
            else:
                put(vm, vm['pinned'])
        else:
            movable.append(vm)
    heap = [(-f, name) for name, f in free.items()]
    heapq.heapify(heap)
    for vm in sorted(movable, key=lambda v: (-v['memory_mib'], v['name'])):
        skipped, chosen = [], None
        allowed = vm.get('allowed')
        if allowed is not None and len(allowed) <= 8:
            # few candidates: look at them directly instead of walking the heap
            best = [h for h in allowed if fits(vm, h) is None]
            chosen = max(best, key=lambda h: (free[h], h)) if best else None
        else:
            while heap:
                neg, name = heapq.heappop(heap)
                if -neg != free[name]:
                    continue  # stale entry
                if -neg < vm['memory_mib']:
                    skipped.append((neg, name))
                    break     # the roomiest host is too small: nobody fits
                skipped.append((neg, name))
                if fits(vm, name) is None:
                    chosen = name
                    break
            for item in skipped:
                if item[1] != chosen:
                    heapq.heappush(heap, item)
        if chosen is None:
            reasons = sorted(set(fits(vm, h['name']) or '' for h in hosts[:50]) - {''})
            unplaced[vm['name']] = 'no host fits: %s' % ('; '.join(reasons[:3]) or 'no candidate')
            continue
        put(vm, chosen)
        heapq.heappush(heap, (-free[chosen], chosen))
    return {'placements': placements, 'unplaced': unplaced,
            'free_after': dict((h, round(f + headroom_mib, 1)) for h, f in free.items())}


def admit(pending, running, max_out, max_in, max_total, source=lambda m: m['source'], dest=lambda m: m['dest'],
          max_in_by=None):
    """The one admission rule, for the predicted schedule and for the drain that runs it: the first
    PENDING move (they are in plan order, longest first) whose source has an outbound slot and whose
    destination an inbound slot (MAX_IN, or its share MAX_IN_BY {destination: n} when the drains of a step share
    it), while fewer than MAX_TOTAL run; None when none may start now."""
    max_in_by = max_in_by or {}
    if len(running) >= max_total:
        return None
    out_busy, in_busy = {}, {}
    for r in running:
        out_busy[source(r)] = out_busy.get(source(r), 0) + 1
        in_busy[dest(r)] = in_busy.get(dest(r), 0) + 1
    for m in pending:
        if out_busy.get(source(m), 0) < max_out and in_busy.get(dest(m), 0) < max_in_by.get(dest(m), max_in):
            return m
    return None


def schedule(moves, rate_mibps, max_out=2, max_in=2, max_total=4, overhead_s=2.0, durations=None, max_in_by=None):
    """Order and time the migrations.

    MOVES: [{'name', 'source', 'dest', 'memory_mib'}]. A move takes overhead_s + memory / rate, or what
    DURATIONS {name: seconds} says it took when measured (a VM that rewrites its memory takes longer than its
    size says). Longest first; a migration starts as soon as its source has an outbound slot, its destination
    an inbound slot and the global limit allows.
    Returns [{'name', 'source', 'dest', 'start_s', 'end_s'}] by start time, and the makespan.
    """
    if rate_mibps <= 0:
        raise ValueError('rate_mibps must be positive')
    durations = durations or {}

    def took(m):
        if m['name'] in durations:
            return float(durations[m['name']])
        return overhead_s + m['memory_mib'] / float(rate_mibps)
    pending = sorted(moves, key=lambda m: (-took(m), -m['memory_mib'], m['name']))
    running = []          # heap of (end, name, move)
    now, timeline = 0.0, []
    while pending or running:
        while pending:
            m = admit(pending, [r[2] for r in running], max_out, max_in, max_total, max_in_by=max_in_by)
            if m is None:
                break
            duration = took(m)
            heapq.heappush(running, (now + duration, m['name'], m))
            timeline.append({'name': m['name'], 'source': m['source'], 'dest': m['dest'],
                             'start_s': round(now, 3), 'end_s': round(now + duration, 3)})
            pending.remove(m)
        if not running:
            break
        now = heapq.heappop(running)[0]
    makespan = max([t['end_s'] for t in timeline] or [0.0])
    return timeline, makespan


def balance(hosts, free_after):
    """Packing quality: the fullest host's use against the fluid lower bound (perfectly even use)."""
    total = sum(float(h['capacity_mib']) for h in hosts)
    used = dict((h['name'], float(h['capacity_mib']) - free_after[h['name']]) for h in hosts)
    fluid = sum(used.values()) / total if total else 0.0
    worst = max(used[h['name']] / float(h['capacity_mib']) for h in hosts) if hosts else 0.0
    return {'max_utilisation': round(worst, 4), 'lower_bound': round(fluid, 4),
            'ratio': round(worst / fluid, 4) if fluid else None}
