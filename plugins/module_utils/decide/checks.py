# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pre-migration compatibility checks as pure functions: facts in, verdict out.

Each check returns ``{'check': NAME, 'status': 'pass'|'warn'|'fail', 'reason': TEXT, 'blocks': SCOPE}``
where SCOPE says what a failure rules out: ``live`` (a cold migration may still work) or ``all``.
:func:`recommend` turns one domain's verdicts into the way to move it.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

PASS, WARN, FAIL = 'pass', 'warn', 'fail'
SAFE_CACHE_MODES = ('none', 'directsync')
LIVE, ALL = 'live', 'all'


def verdict(check, status, reason, blocks=ALL):
    return {'check': check, 'status': status, 'reason': reason, 'blocks': blocks}


def _version_tuple(text):
    try:
        return tuple(int(x) for x in str(text).split('.'))
    except (TypeError, ValueError):
        return None


def kib_to_mib(kib):
    return int(round((kib or 0) / 1024.0))


def check_reachable(error):
    if error:
        return verdict('destination_reachable', FAIL, 'cannot reach the destination: %s' % error)
    return verdict('destination_reachable', PASS, 'destination libvirt answers')


def check_not_same_host(src_uuid, dst_uuid):
    if src_uuid and src_uuid == dst_uuid:
        return verdict('not_same_host', FAIL, 'destination is the source host (same host UUID %s)' % src_uuid)
    return verdict('not_same_host', PASS, 'host UUIDs differ (%s -> %s)' % (src_uuid, dst_uuid))


def check_domain_type(domain_type, dst_domain_types):
    if domain_type in (dst_domain_types or []):
        return verdict('domain_type', PASS, '%s domains run on the destination' % domain_type)
    return verdict('domain_type', FAIL, 'a %s domain cannot run on the destination (it offers: %s)'
                   % (domain_type, ', '.join(dst_domain_types or []) or 'nothing'))


def check_cpu(cpu, compare_error=None, compared=True):
    """CPU compatibility from libvirt's hypervisor CPU comparison on the destination.

    CPU is the domain's CPU facts; COMPARE_ERROR is libvirt's message when the comparison said
    incompatible; COMPARED is False when there was nothing to compare (no CPU model).
    """
    mode = (cpu or {}).get('mode')
    if mode == 'host-passthrough':
        return verdict('cpu', WARN, 'host-passthrough CPU: only safe between hosts with identical CPUs', LIVE)
    if compare_error:
        return verdict('cpu', FAIL, 'the destination cannot provide the guest CPU: %s' % compare_error)
    if not compared:
        return verdict('cpu', PASS, 'no CPU model to compare (hypervisor default CPU)')
    return verdict('cpu', PASS, 'the destination provides the guest CPU (%s)' % ((cpu or {}).get('model') or mode))


def check_machine_type(arch, machine, dst_machine_types):
    known = (dst_machine_types or {}).get(arch or 'x86_64', [])
    if not machine:
        return verdict('machine_type', PASS, 'no machine type set')
    if machine in known:
        return verdict('machine_type', PASS, 'machine type %s is supported on the destination' % machine)
    return verdict('machine_type', FAIL, 'machine type %s is not supported on the destination' % machine)


def check_versions(src_host, dst_host):
    problems = []
    for key, label in (('libvirt_version', 'libvirt'), ('hypervisor_version', 'hypervisor')):
        s, d = _version_tuple(src_host.get(key)), _version_tuple(dst_host.get(key))
        if s and d and d < s:
            problems.append('%s %s on the destination is older than %s on the source'
                            % (label, dst_host.get(key), src_host.get(key)))
    if problems:
        return verdict('versions', FAIL, '; '.join(problems), LIVE)
    return verdict('versions', PASS, 'destination libvirt %s / hypervisor %s not older than the source'
                   % (dst_host.get('libvirt_version'), dst_host.get('hypervisor_version')))


def check_memory(needed_kib, dst_free_bytes, reserve_mib=0, planned_mib=0):
    needed = kib_to_mib(needed_kib)
    free = int((dst_free_bytes or 0) / (1024 * 1024))
    left = free - reserve_mib - planned_mib - needed
    detail = ('needs %d MiB; destination has %d MiB free, %d MiB reserved, %d MiB already planned'
              % (needed, free, reserve_mib, planned_mib))
    if left < 0:
        return verdict('memory', FAIL, 'not enough memory on the destination: %s' % detail)
    if left < max(64, needed // 10):
        return verdict('memory', WARN, 'tight memory on the destination: %s' % detail)
    return verdict('memory', PASS, detail)


def check_collision(name, uuid, dst_domains):
    """DST_DOMAINS: list of (name, uuid, active) on the destination."""
    for dname, duuid, _active in dst_domains:
        if dname == name and duuid == uuid:
            return verdict('no_collision', FAIL, 'the destination already has this domain (%s)' % name)
        if dname == name:
            return verdict('no_collision', FAIL, 'another domain named %s (UUID %s) exists on the destination'
                           % (name, duuid))
        if duuid == uuid:
            return verdict('no_collision', FAIL, 'domain %s on the destination has the same UUID %s'
                           % (dname, uuid))
    return verdict('no_collision', PASS, 'no domain with this name or UUID on the destination')


def check_networks(interfaces, dst_bridges, dst_networks):
    """Every bridge / libvirt network the guest's interfaces use must exist (and run) on the destination."""
    active = set(n['name'] for n in dst_networks or [] if n.get('active'))
    defined = set(n['name'] for n in dst_networks or [])
    missing, warnings = [], []
    for iface in interfaces or []:
        if iface.get('type') == 'bridge' and iface.get('bridge'):
            if iface['bridge'] not in (dst_bridges or []):
                missing.append('bridge %s (interface %s)' % (iface['bridge'], iface.get('mac')))
        elif iface.get('type') == 'network' and iface.get('network'):
            if iface['network'] not in defined:
                missing.append('network %s (interface %s)' % (iface['network'], iface.get('mac')))
            elif iface['network'] not in active:
                missing.append('network %s is not active (interface %s)' % (iface['network'], iface.get('mac')))
        elif iface.get('type') not in ('bridge', 'network', 'user'):
            warnings.append('%s interface %s not checked' % (iface.get('type'), iface.get('mac')))
    if missing:
        return verdict('networks', FAIL, 'missing on the destination: %s' % ', '.join(missing))
    if warnings:
        return verdict('networks', WARN, '; '.join(warnings))
    return verdict('networks', PASS, 'every bridge and network the guest uses exists on the destination')


def check_blockers(blockers):
    if blockers:
        return verdict('no_blocking_devices', FAIL, 'cannot live-migrate: %s'
                       % '; '.join(b['reason'] for b in blockers), LIVE)
    return verdict('no_blocking_devices', PASS, 'no device bound to the source host')


def relevant_disks(disks):
    """Disks that carry data to move: skip empty removable drives."""
    return [d for d in disks or [] if d.get('source') or d.get('volume') or d.get('type') == 'network']


def check_storage(disks, storage, allow_copy):
    """STORAGE: the shared-storage probe's per-disk findings, keyed by target."""
    copy, unproven, shared = [], [], []
    for d in relevant_disks(disks):
        found = storage.get(d['target']) or {}
        state = found.get('verdict', 'unknown')
        if state == 'shared':
            shared.append(d['target'])
        elif d.get('readonly') and state == 'unknown':
            unproven.append('%s (read-only)' % d['target'])
        else:
            copy.append('%s (%s: %s)' % (d['target'], state, found.get('reason', 'not probed')))
    if copy and not allow_copy:
        return verdict('storage', FAIL, 'not proven shared and storage copy not allowed: %s' % ', '.join(copy),
                       LIVE)
    if copy:
        return verdict('storage', WARN, 'to be copied: %s' % ', '.join(copy))
    if unproven:
        return verdict('storage', WARN, 'not proven shared: %s' % ', '.join(unproven))
    return verdict('storage', PASS, 'every disk proven shared (%s)' % (', '.join(shared) or 'no disks'))


def check_cache_modes(disks, storage):
    """A disk live-migrated on shared storage must not have host-side write caching."""
    unsafe, risky = [], []
    for d in relevant_disks(disks):
        if d.get('readonly') or (storage.get(d['target']) or {}).get('verdict') != 'shared':
            continue
        if d.get('cache') in SAFE_CACHE_MODES:
            continue
        text = '%s cache=%s' % (d['target'], d.get('cache') or 'default (writeback)')
        (risky if d.get('type') == 'network' else unsafe).append(text)
    if unsafe:
        return verdict('cache_modes', FAIL, 'host page cache on shared storage is unsafe for live migration '
                       '(use cache=none or directsync): %s' % ', '.join(unsafe), LIVE)
    if risky:
        return verdict('cache_modes', WARN, 'network disk with host-side caching: %s' % ', '.join(risky))
    return verdict('cache_modes', PASS, 'cache modes are safe for live migration')


def judge(src_host, facts, dst_host, dst_domains, cpu_error, cpu_compared, storage, allow_copy, reserve_mib=0,
          planned_mib=0):
    """Every check of one domain (FACTS) against one reachable destination, from facts and the answers only the
    destination's libvirt gives (CPU_ERROR, CPU_COMPARED: its CPU comparison; STORAGE: the shared-storage
    findings by target). DST_DOMAINS: [(name, uuid, active)] there. Returns (checks, copy needed?, recommended)."""
    checks = [check_reachable(None),
              check_not_same_host(src_host.get('uuid'), dst_host.get('uuid')),
              check_domain_type(facts['domain_type'], dst_host.get('domain_types')),
              check_cpu(facts['cpu'], cpu_error, cpu_compared),
              check_machine_type(facts['arch'], facts['machine'], dst_host.get('machine_types')),
              check_versions(src_host, dst_host),
              check_memory(facts['memory_kib'], dst_host.get('memory_free'), reserve_mib, planned_mib),
              check_collision(facts['name'], facts['uuid'], dst_domains),
              check_networks(facts['interfaces'], dst_host.get('bridges'), dst_host.get('networks')),
              check_blockers(facts['blockers']),
              check_storage(facts['disks'], storage, allow_copy),
              check_cache_modes(facts['disks'], storage)]
    copy_needed = any((storage.get(d['target']) or {}).get('verdict') != 'shared'
                      for d in relevant_disks(facts['disks']) if not d.get('readonly'))
    return checks, copy_needed, recommend(checks, facts['active'], copy_needed)


def overall(verdicts):
    statuses = [v['status'] for v in verdicts]
    return FAIL if FAIL in statuses else WARN if WARN in statuses else PASS


def recommend(verdicts, active, storage_copy_needed):
    """The way to move one domain: live, live_copy_storage, offline, cold or none."""
    fails = [v for v in verdicts if v['status'] == FAIL]
    if any(v['blocks'] == ALL for v in fails):
        return 'none'
    if not active:
        return 'cold' if storage_copy_needed else 'offline'
    if fails:
        return 'cold'
    return 'live_copy_storage' if storage_copy_needed else 'live'
