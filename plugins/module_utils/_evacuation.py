# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The evacuation plan: checks of every VM against every destination, then _planner's placement
and schedule. One connection per host for the whole plan.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

import errno
import json
import os
import tempfile
import threading
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - not a Linux host
    fcntl = None

from ansible_collections.vmmigration.libvirt.plugins.module_utils import _client as CLIENT
from ansible_collections.vmmigration.libvirt.plugins.module_utils import _planner as P
from ansible_collections.vmmigration.libvirt.plugins.module_utils import _report as R
from ansible_collections.vmmigration.libvirt.plugins.module_utils import _security as SEC
from ansible_collections.vmmigration.libvirt.plugins.module_utils._client import LibvirtClientError
from ansible_collections.vmmigration.libvirt.plugins.module_utils._cluster import (
    EXCLUDED,
    PLAN_VERSION,
    assemble_plan,
    new_vm_entry,
    note_verdict,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils._migration import write_status as write_json
from ansible_collections.vmmigration.libvirt.plugins.module_utils._power import shut_down
from ansible_collections.vmmigration.libvirt.plugins.module_utils._precheck import check_domains
from ansible_collections.vmmigration.libvirt.plugins.module_utils._wait import wait_until

# what the drain does with VMs that cannot live-migrate anywhere (non_live_policy)
NON_LIVE_POLICIES = ('skip', 'shutdown', 'cold')

# the plan's options (evacuation_plan and evacuate; documented in doc_fragments/evacuation.py)
PLAN_ARGSPEC = dict(
    destinations=dict(type='list', elements='dict', required=True, options=dict(
        name=dict(type='str', required=True), uri=dict(type='str', required=True), security=dict(type='dict'))),
    domains=dict(type='list', elements='str'),
    exclude_domains=dict(type='list', elements='str', default=[]),
    prefer_destinations=dict(type='list', elements='str', default=[]),
    non_live_policy=dict(type='str', choices=list(NON_LIVE_POLICIES), default='skip'),
    headroom_mib=dict(type='int', default=1024),
    anti_affinity=dict(type='dict', default={}),
    pinned=dict(type='dict', default={}),
    rate_mibps=dict(type='int', default=1000),
    overhead_s=dict(type='float', default=2.0),
    fixed_s=dict(type='float', default=0.0),
    move_times=dict(type='dict', default={}),
    max_outbound=dict(type='int', default=2),
    max_inbound=dict(type='int', default=2),
    max_total=dict(type='int', default=4),
)


def drain_move_options(migrate_options, cold_options):
    """The drain's migrate_options and cold_options as each move gets them, checked before anything moves:
    (problems, migrate_options, cold_options) - keys the modules do not know named, the drain's own keys (its
    headroom_mib, per_vm_timeout_s and status_file) refused, every value typed as the modules type their options
    (a survey sends text; tls a choice, allow_plaintext a bool), then the live engine's own rules."""
    from ansible_collections.vmmigration.libvirt.plugins.module_utils._coldmove import (  # pylint: disable=import-outside-toplevel
        COLD_ARGSPEC, COLD_SET_BY_THE_DRAIN)
    from ansible_collections.vmmigration.libvirt.plugins.module_utils import _migration as M  # pylint: disable=import-outside-toplevel
    live, cold = dict(migrate_options or {}), dict(cold_options or {})
    problems = ['migrate_options: %s' % x for x in M.option_problems(live)]
    unknown_cold = sorted(set(cold) - set(COLD_ARGSPEC))
    problems += ['cold_options: unknown options: %s' % ', '.join(unknown_cold)] if unknown_cold else []
    if problems:
        return problems, live, cold
    drains = sorted(set(live) & set(M.SET_BY_THE_DRAIN)) + sorted(set(cold) & set(COLD_SET_BY_THE_DRAIN))
    if drains:
        return ['migrate_options / cold_options: %s set by the drain itself (from its headroom_mib, per_vm_timeout_s '
                'and status_file): leave them out' % ', '.join(drains)], live, cold
    live, errors = M.typed_options(M.migration_argspec(), live)
    problems += ['migrate_options: %s' % e for e in errors]
    cold, errors = M.typed_options(COLD_ARGSPEC, cold)
    problems += ['cold_options: %s' % e for e in errors]
    if not problems:
        problems = ['migrate_options: %s' % x for x in M.validate(M.live_options(live))]
    return problems, live, cold


def validate_plan_options(p):
    """Bad input, refused before anything happens: a list of problems."""
    limits = ('rate_mibps', 'max_outbound', 'max_inbound', 'max_total')
    problems = ['%s must be at least 1 (got %s)' % (k, p[k]) for k in limits if p[k] < 1]
    if p['headroom_mib'] < 0:
        problems.append('headroom_mib must not be negative (got %s)' % p['headroom_mib'])
    for k in ('overhead_s', 'fixed_s'):
        if (p.get(k) or 0) < 0:
            problems.append('%s must not be negative (got %s)' % (k, p[k]))
    for vm, secs in (p.get('move_times') or {}).items():
        try:
            ok = float(secs) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append('move_times: %s must be a number of seconds above 0 (got %r)' % (vm, secs))
    names = [d['name'] for d in p['destinations']]
    if not names:
        problems.append('destinations is empty')
    if len(set(names)) != len(names):
        problems.append('destination names must be unique')
    # free-form keys (group and VM names): an argument spec cannot type them, so they are checked here
    for group, members in (p.get('anti_affinity') or {}).items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            problems.append('anti_affinity: group %s must be a list of VM names (got %r)' % (group, members))
    for vm, dest in (p.get('pinned') or {}).items():
        if not isinstance(dest, str):
            problems.append('pinned: %s must name one destination (got %r)' % (vm, dest))
    unknown = [d for d in p['pinned'].values() if isinstance(d, str) and d not in names]
    if unknown:
        problems.append('pinned to hosts that are not destinations: %s' % ', '.join(sorted(set(unknown))))
    return problems


class PlanRefused(LibvirtClientError):
    """An approved plan that cannot run here at all (another host, version or policy); nothing was done."""


def revalidate(plan, source_doms, dest_state, policy, headroom_mib, read=None):
    """What an approved PLAN still allows now (pure): (plan to run, what changed since it was made).

    Only what can change between approving and running is looked at: each VM still running on the source
    with the same UUID; each destination reachable, without a domain of that name or UUID, with the free
    memory the plan's moves to it need (with the headroom, as planned) and no other VM of the move's anti-affinity
    group; VMs started since, which the plan does not know (they stay). SOURCE_DOMS: {name: (uuid, active)} on the
    source now. DEST_STATE: per destination name, None when unreachable (with 'error'), else {'free_mib',
    'domains': [(name, uuid)]}; READ(name) gives the state of one it lacks (an alternate's, asked only when needed).
    A move whose destination no longer holds goes to the first of its alternates (ranked when the plan was made,
    each allowed by the same checks and rules) that holds now, said among the changes; with none, it is left,
    the change as its reason.
    """
    if plan.get('version') != PLAN_VERSION:
        raise PlanRefused('the plan is of version %s; this collection runs plans of version %d: make it again'
                          % (plan.get('version'), PLAN_VERSION))
    if bool(plan.get('allow_cold')) != (policy == 'cold'):
        raise PlanRefused('the plan was made %s cold moves, for a non_live_policy %s cold; the drain runs with '
                          'non_live_policy=%s: make the plan again with that policy'
                          % ('with' if plan.get('allow_cold') else 'without', '=' if plan.get('allow_cold') else '!=',
                             policy))
    changes, keep, left = [], [], dict(plan.get('left') or {})
    planned = set(m['name'] for m in plan['moves']) | set(left)
    taken, groups = {}, {}      # per destination: MiB the moves kept there take, their anti-affinity groups

    def state(d):
        if d not in dest_state and read is not None:
            dest_state[d] = read(d)
        return dest_state.get(d)

    def why_not(m, d):
        dest = state(d)
        if dest is None or dest.get('error'):
            return 'destination %s cannot be reached now: %s' % (d, (dest or {}).get('error', '?'))
        clash = [x for x in dest['domains'] if x[0] == m['name'] or (m.get('uuid') and x[1] == m['uuid'])]
        if clash:
            return '%s already has a domain %s (UUID %s)' % (d, clash[0][0], clash[0][1])
        mib = m.get('memory_mib') or 0
        if headroom_mib + taken.get(d, 0) + mib > dest['free_mib']:
            return ('%s has %d MiB free now; with the %d MiB kept free it cannot take %d MiB more'
                    % (d, dest['free_mib'], headroom_mib, mib))
        if m.get('group') and m['group'] in groups.get(d, ()):
            return 'another VM of anti-affinity group %s goes to %s' % (m['group'], d)
        return None

    def take(m):
        taken[m['destination']] = taken.get(m['destination'], 0) + (m.get('memory_mib') or 0)
        if m.get('group'):
            groups.setdefault(m['destination'], set()).add(m['group'])
        keep.append(m)

    said = []                                # (plan position, change)
    rerouted = []
    for i, m in enumerate(plan['moves']):    # in plan order (longest first): keep what holds, as planned
        now = source_doms.get(m['name'])
        why = None
        if now is None:
            why = 'no longer on this host'
        elif m.get('uuid') and now[0] != m['uuid']:
            why = 'another domain of that name (UUID %s, the plan had %s)' % (now[0], m['uuid'])
        elif not now[1] and m['method'] in ('live', 'live_copy_storage'):
            why = 'no longer running'
        else:
            why = why_not(m, m['destination'])
            if why is None:
                take(m)
            else:
                rerouted.append((i, m, why))  # (its alternates are tried once every move that holds is kept)
            continue
        said.append((i, '%s: %s' % (m['name'], why)))
        left[m['name']] = 'changed since the plan was approved: %s' % why
    for i, m, why in rerouted:
        alt = next((a for a in m.get('alternates') or [] if why_not(m, a['destination']) is None), None)
        if alt is not None:
            take(dict(m, destination=alt['destination'], method=alt['method'], copies_disks=alt['copies_disks'],
                      storage=alt.get('storage') or {}, instead_of=m['destination'], alternates=[]))
            said.append((i, '%s: %s - goes to %s instead (an alternate the approved plan allows)'
                         % (m['name'], why, alt['destination'])))
            continue
        said.append((i, '%s: %s' % (m['name'], why)))
        left[m['name']] = 'changed since the plan was approved: %s' % why
    changes = [c for _i, c in sorted(said, key=lambda x: x[0])]
    order = dict((m['name'], i) for i, m in enumerate(plan['moves']))
    keep.sort(key=lambda m: order[m['name']])
    for name, (_uuid, active) in sorted(source_doms.items()):
        if active and name not in planned:
            changes.append('%s: started after the plan was approved (not in it: it stays)' % name)
            left[name] = 'started after the plan was approved: not in it'
    return dict(plan, moves=keep, left=left), changes


def without_excluded(plan, excluded):
    """PLAN with the moves of the VMs in EXCLUDED taken out and left with that reason (pure)."""
    excluded = set(excluded or ())
    if not excluded:
        return plan
    left = dict(plan.get('left') or {})
    for m in plan.get('moves') or []:
        if m['name'] in excluded:
            left[m['name']] = EXCLUDED
    return dict(plan, moves=[m for m in plan.get('moves') or [] if m['name'] not in excluded], left=left)


def copies_allowed(p):
    """Whether the drain may copy disks that are not proven shared: copy_storage (evacuation_plan) or
    migrate_options.copy_storage (evacuate) is not none."""
    return (p.get('copy_storage') or (p.get('migrate_options') or {}).get('copy_storage') or 'auto') != 'none'


def read_destination(cache, uris, name, here):
    """What revalidation reads of destination NAME now: {'free_mib', 'domains': [(name, uuid)]}, or {'error'}
    when it cannot be reached (SourceAsDestination when it is the source host, UUID HERE, itself)."""
    if name not in uris:
        return {'error': 'not among the destinations given'}
    # (a host whose packets are dropped would hold libvirt's connect for TCP's retries, about two minutes; an
    # ssh URI may reach it through the ssh configuration - an alias, a jump host -: only libvirtd's own ports)
    address = CLIENT.libvirtd_address(uris[name])
    if address and address[1] in (16509, 16514) and not CLIENT.reachable(address):
        return {'error': 'its libvirtd (%s port %d) does not answer within 3 s' % address}
    try:
        dst = cache.get(uris[name])
        if dst.host_uuid() == here:
            raise SourceAsDestination('destination %s is the source host itself: nothing was done' % name)
        doms = dst.call('cannot list domains', dst.conn.listAllDomains, 0)
        return {'free_mib': dst.call('cannot read free memory', dst.conn.getFreeMemory) // (1024 * 1024),
                'domains': [(x.name(), x.UUIDString()) for x in doms]}
    except SourceAsDestination:
        raise
    except LibvirtClientError as e:
        return {'error': e.msg}


def untouched(result, error, method='live'):
    """Whether a failed move changed nothing (pure): the guest runs on the source alone and the destination
    holds nothing of it - refused before it started (a connection that failed, a check or the transport that
    refused), or a live migration rolled back with the destination's copy removed. Only such a move may be
    tried again elsewhere; any other failure (a post-copy, a state not read back, a copy that could not be
    removed, a cold move that shut the guest down and started it again) is reported as it is."""
    if error is None:
        return False
    if result is None:
        return True
    if result.get('changed') is not False:
        return False
    if result.get('state') not in ((None, 'rolled_back') if method != 'cold' else (None,)):
        return False
    return not any(d.get('action') == 'cleanup' and str(d.get('reason', '')).startswith('could not')
                   for d in result.get('decisions') or [])


def check_approved(cache, p, plan, policy):
    """An approved PLAN against the hosts as they are now (see revalidate): (plan to run, changes). Reads
    the source's domains and, per destination the plan uses, its free memory and domains - nothing else."""
    src = cache.get(p['uri'])
    here = src.host_uuid()
    if (plan.get('source') or {}).get('uuid') != here:
        raise PlanRefused('the plan was made for the host with UUID %s; this is %s: nothing was done'
                          % ((plan.get('source') or {}).get('uuid'), here))
    unknown = sorted(set(m['destination'] for m in plan.get('moves') or [])
                     - set(d['name'] for d in p['destinations']))
    if unknown:
        raise PlanRefused('the plan moves VMs to %s, which are not among the destinations given: nothing was done'
                          % ', '.join(unknown))
    source_doms = dict((d.name(), (d.UUIDString(), bool(d.isActive())))
                       for d in src.call('cannot list domains', src.conn.listAllDomains, 0))
    plan = without_excluded(plan, [n for n in p.get('exclude_domains') or [] if (source_doms.get(n) or (0, 0))[1]])
    uris = dict((d['name'], d['uri']) for d in p['destinations'])

    def read(name):
        return read_destination(cache, uris, name, here)
    dest_state = dict((name, read(name)) for name in sorted(set(m['destination'] for m in plan['moves'])))
    return revalidate(plan, source_doms, dest_state, policy, plan.get('headroom_mib') or 0, read=read)


class SourceAsDestination(LibvirtClientError):
    """A destination that is the host being drained (the same libvirt host UUID): nothing can go there."""


def plan_evacuation(cache, p):
    """The plan: which VM goes where, how, and when (predicted). Cold moves are planned only with
    P['allow_cold'] (the drain passes it for the cold policy only, like the preflight), so the plan places
    only VMs that will really move; a VM that only a cold move could take is left with that reason and
    listed in 'cold_only' (the shutdown policy stops those)."""
    src = cache.get(p['uri'])
    src_uuid = src.host_uuid()
    names = p.get('domains')
    excluded = set(p.get('exclude_domains') or [])
    active = set(d.name() for d in src.call('cannot list domains', src.conn.listAllDomains, 0) if d.isActive()) \
        if not names or excluded else set()
    if not names:
        names = sorted(active)
    stays = sorted(n for n in names if n in excluded and n in active)
    names = [n for n in names if n not in excluded]
    per_vm = dict((n, new_vm_entry()) for n in names)
    hosts = []
    for dest in p['destinations']:
        dst = cache.get(dest['uri'])
        # memory is placed by the planner: the per-destination check must not count it
        report = check_domains(src, dst, names, reserve_mib=0, planned_mib=0, allow_storage_copy=copies_allowed(p),
                               probe_storage=True)
        if report['destination'] is None:
            for n in names:
                per_vm[n]['refused'][dest['name']] = ['destination unreachable']
            continue
        if src_uuid and report['destination'].get('uuid') == src_uuid:
            raise SourceAsDestination(
                'destination %s is the source host itself (%s reaches the same libvirt host, UUID %s): a drain '
                'cannot move VMs to the host it empties; nothing was changed - list other hosts as destinations'
                % (dest['name'], SEC.redact_uri(dest['uri']), src_uuid))
        hosts.append({'name': dest['name'], 'free_mib': report['destination']['memory_free'] / (1024 * 1024),
                      'capacity_mib': report['destination']['memory_total'] / (1024 * 1024),
                      'groups': []})
        for r in report['domains']:
            note_verdict(per_vm[r['name']], dest['name'], r, p.get('allow_cold'))
    return assemble_plan(names, per_vm, hosts, p, src_uuid, SEC.redact_uri(src.uri), stays=stays,
                         prefer=p.get('prefer_destinations') or None)


# ---------------------------------------------------------------------------------------------------
# The drain itself: the plan's migrations run in threads under the concurrency limits, each with its
# own connections, a deadline, and its result written to a journal as it ends.

def admit(pending, running, limits):
    """Which pending move to start now: _planner.admit, the rule the plan's schedule was predicted with
    (one source - this host; PENDING in plan order; RUNNING and PENDING: [{'name', 'destination'}];
    LIMITS: {'max_outbound', 'max_inbound', 'max_total', 'inbound_limits' - this drain's share of a destination
    whose inbound limit the drains of its step share, from its approved plan}). Returns a move or None."""
    return P.admit(pending, running, limits['max_outbound'], limits['max_inbound'], limits['max_total'],
                   source=lambda m: 'source', dest=lambda m: m['destination'],
                   max_in_by=limits.get('inbound_limits'))


def split_plan(plan, policy):
    """The plan's moves under the policy for VMs that cannot live-migrate: (to run, not moved).

    Moves with method 'cold' are run as cold migrations (policy cold), shut down on the source
    (policy shutdown) or left running there (policy skip); VMs the plan could not place are left.
    """
    run, left = [], []
    for m in plan['moves']:
        if m['method'] == 'cold' and policy != 'cold':
            left.append({'name': m['name'], 'action': 'shutdown' if policy == 'shutdown' else 'skip',
                         'reason': 'cannot live-migrate to %s (only a cold migration could move it)'
                         % m['destination']})
        else:
            run.append(m)
    cold_only = set(plan.get('cold_only') or [])
    for name, reason in sorted(plan['left'].items()):
        action = 'shutdown' if policy == 'shutdown' and name in cold_only else 'skip'
        left.append({'name': name, 'action': action, 'reason': reason})
    return run, left


# Where the drain lock of each host lives on the machine that runs the drain: /run/lock (Debian, Ubuntu, RHEL
# 8+), else the system's temporary directory.
LOCK_DIRS = ('/run/lock', '/var/lock')


def host_lock_path(host_id, dirs=None):
    """The one lock file of a drain of the host HOST_ID (its libvirt host UUID): the same file whatever
    journal or status file a drain names."""
    safe = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in str(host_id))
    for d in (LOCK_DIRS if dirs is None else dirs):
        if os.path.isdir(d) and os.access(d, os.W_OK | os.X_OK):
            return os.path.join(d, 'vmmigration-drain-%s.lock' % safe)
    return os.path.join(tempfile.gettempdir(), 'vmmigration-drain-%s.lock' % safe)


def take_lock(path, now=time.time):
    """The drain's lock on this host: an exclusive flock on PATH (atomic; the kernel drops it when its
    process dies, so a crashed drain leaves no stale lock). Returns the open file descriptor (held until
    release_lock); raises EvacuationRunning naming the holder when another drain has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (IOError, OSError) as e:
        holder = read_json(path) or {}
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise EvacuationRunning('an evacuation of this host is already running (pid %s, since %s): wait for it, '
                                    'or watch it with the status file' % (holder.get('pid', '?'), holder.get('since', '?')))
        raise
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({'pid': os.getpid(), 'since': now()}).encode('utf-8'))
    return fd


def release_lock(fd):
    """Drop the lock (the file stays: removing it would let two drains lock two different files)."""
    if fd is None:
        return
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def journal_append(path, entry):
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)   # its owner's only
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, 'a') as f:
        f.write(json.dumps(entry, sort_keys=True) + '\n')
        f.flush()
        os.fsync(f.fileno())


def read_journal(path):
    entries = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        entries.append(json.loads(line))
                    except ValueError:
                        pass  # a line cut short by a crash
    except (IOError, OSError):
        pass
    return entries


def pid_alive(pid):
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, ValueError, TypeError):
        return False


def read_json(path):
    """A JSON file written by write_json, or None (missing, or caught mid-rename)."""
    if not path:
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return None


def summarize_result(name, move, result, error=None):
    """One VM's line of the report."""
    r = result or {}
    plan = r.get('plan') or {}
    return {'name': name, 'destination': move['destination'], 'method': move['method'],
            'state': r.get('state') or ('failed' if error else 'unknown'),
            'strategy': plan.get('strategy'), 'total_time_s': r.get('total_time_s'),
            'downtime_ms': r.get('downtime_ms'), 'bytes_transferred': r.get('bytes_transferred'),
            'postcopy': r.get('postcopy'), 'paused': r.get('paused'), 'announced': r.get('announced'),
            'answering': r.get('answering'), 'phases': r.get('phases'), 'transport': (r.get('transport') or {}).get('transport'), 'error': error}


class Evacuation:
    """Drain one hypervisor: plan, run the moves under the limits, verify, report."""

    def __init__(self, cache, p, cache_factory, clock=time.monotonic, now=time.time, sleep=time.sleep, probe=None):
        self.cache, self.p, self.cache_factory = cache, p, cache_factory
        self.clock, self.now, self.sleep = clock, now, sleep
        self.probe = probe  # the ICMP probe of the addresses to verify (tests give a fake one)
        self.lock = threading.Lock()
        self.results = []
        self.running = {}
        self.pending = []
        self.done = []          # the moves that ended well (where their anti-affinity groups went)
        self.rerouted = []      # moves its destination refused, with nothing changed, sent to an alternate
        self.stop_flags = {'stop': False}
        self.t0 = None
        self.journal_errors = []
        self.status_errors = []

    # -- one move, in its own thread with its own connections ---------------------------------------
    def _move(self, move):
        from ansible_collections.vmmigration.libvirt.plugins.module_utils._coldmove import COLD_ARGSPEC  # pylint: disable=import-outside-toplevel
        from ansible_collections.vmmigration.libvirt.plugins.module_utils._migration import (  # pylint: disable=import-outside-toplevel
            live_options, option_defaults)
        from ansible_collections.vmmigration.libvirt.plugins.module_utils._pipeline import move_vm  # pylint: disable=import-outside-toplevel
        p = self.p
        name = move['name']
        started = self.clock() - self.t0
        cache = self.cache_factory()
        result, error = None, None
        try:
            src = cache.get(move.get('from_uri') or p['uri'])
            dst = cache.get(move['uri'])
            # the URIs as given (libvirt opens them); results and the journal show them redacted
            where = {'uri': move.get('from_uri') or p['uri'], 'dest_uri': move['uri'], 'domain': name}
            if p.get('plan') and not p.get('rollback') and 'storage' in move:
                # checked when the plan was made, revalidated at the drain's start: not checked again
                where['approved'] = {'storage': move['storage']}
            if move['method'] == 'cold':
                opts = option_defaults(COLD_ARGSPEC)
                opts.update(p.get('cold_options') or {})
                opts['headroom_mib'] = p.get('headroom_mib', opts['headroom_mib'])
            else:
                opts = live_options(p.get('migrate_options'))
                opts['status_file'] = self.vm_status_path(name)
                opts['hard_timeout_s'] = p['per_vm_timeout_s']
                # (one headroom per drain: its plan's, and each move's own memory check - a rollback's too)
                opts['headroom_mib'] = p.get('headroom_mib', opts['headroom_mib'])
            opts.update(where)
            # the same pipeline as the migrate module: move, announce from the destination, verify the addresses
            result = move_vm(src, dst, name, move['method'], opts, clock=self.clock, sleep=self.sleep,
                             hosts_security=self.move_security(move), announce_self=p.get('announce'),
                             addresses=(p.get('verify_addresses_by_vm') or {}).get(name),
                             verify_timeout_s=p.get('verify_timeout_s') or 10.0, probe=self.probe)
        except Exception as e:  # pylint: disable=broad-except
            # One VM failing never stops the drain by itself. What happened to it is the engine's result
            # (rolled back, or moved with its source cleanup failed, or a post-copy left to finish); an
            # error without one (a connection that failed before the engine started) changed nothing.
            result = getattr(e, 'result', None)
            error = getattr(e, 'msg', None) or '%s: %s' % (type(e).__name__, e)
            if result is None and not isinstance(e, LibvirtClientError):
                error = 'unexpected error (a defect of vmmigration.libvirt; please report it): %s' % error
        finally:
            cache.close()
        line = summarize_result(name, move, result, error)
        line['start_s'] = round(started, 2)
        line['end_s'] = round(self.clock() - self.t0, 2)
        line['decisions'] = (result or {}).get('decisions')
        if (result or {}).get('status_file_error'):
            with self.lock:
                if result['status_file_error'] not in self.status_errors:
                    self.status_errors.append(result['status_file_error'])
        if move.get('instead_of'):
            line.update(instead_of=move['instead_of'], rerouted_because=move.get('rerouted_because'))
        # the journal first: a move is over for the drain only once its end is recorded
        self.journal({'event': 'end', 'time': self.now(), 'vm': name, 'rollback': bool(p.get('rollback')),
                      'result': dict((k, v) for k, v in line.items() if k != 'decisions')})
        again = (self.reroute(move, error) if untouched(result, error, move['method']) and not p.get('rollback')
                 else None)
        with self.lock:
            if again is not None:
                # (queued before this move leaves the running ones: the drain never sees neither)
                self.rerouted.append({'name': name, 'from': move['destination'], 'to': again['destination'],
                                      'why': error, 'at_s': line['end_s']})
                self.pending.append(again)
            else:
                self.results.append(line)
                if not error:
                    self.done.append(move)
            self.running.pop(name, None)
        if again is not None:
            self.journal({'event': 'reroute', 'time': self.now(), 'vm': name, 'from': move['destination'],
                          'to': again['destination'], 'why': error})

    def stopping(self):
        return self.stop_flags['stop']

    def reroute(self, move, error):
        """A move its destination refused or could not take, with nothing changed (untouched): the same move to
        the first of its remaining alternates (ranked when the plan was made, allowed by the same checks and
        rules) that holds now - reachable, no domain of its name or UUID, the free memory for it beside the
        headroom and every move of this drain still running or waiting to go there, no VM of its anti-affinity
        group going there - queued under the same admission control; None when none holds, or the drain is
        stopping (the move then ends failed, as it did)."""
        alternates = [a for a in move.get('alternates') or [] if a['destination'] not in move.get('tried', ())]
        if not alternates or self.stopping():
            return None
        p = self.p
        uris = dict((d['name'], d['uri']) for d in p['destinations'])
        with self.lock:
            waiting = list(self.running.values()) + list(self.pending)
            going = waiting + list(self.done)
        cache = self.cache_factory()
        try:
            try:
                here = cache.get(p['uri']).host_uuid()
            except LibvirtClientError:
                return None
            for alt in alternates:
                d = alt['destination']
                try:
                    now = read_destination(cache, uris, d, here)
                except LibvirtClientError as e:
                    now = {'error': e.msg}
                if now.get('error'):
                    continue
                if any(x[0] == move['name'] or (move.get('uuid') and x[1] == move['uuid']) for x in now['domains']):
                    continue
                # (a move that ended is in the free memory read now; one running or waiting may not be yet)
                need = (p.get('headroom_mib') or 0) + (move.get('memory_mib') or 0) + sum(
                    m.get('memory_mib') or 0 for m in waiting if m['destination'] == d and m['name'] != move['name'])
                if need > now['free_mib']:
                    continue
                if move.get('group') and any(m['destination'] == d and m.get('group') == move['group']
                                             and m['name'] != move['name'] for m in going):
                    continue
                return dict(move, destination=d, uri=uris[d], method=alt['method'], copies_disks=alt['copies_disks'],
                            storage=alt.get('storage') or {}, instead_of=move.get('instead_of') or move['destination'],
                            rerouted_because=error, tried=list(move.get('tried') or []) + [move['destination'], d],
                            alternates=[a for a in alternates if a is not alt])
        finally:
            cache.close()
        return None

    def wait_limit_s(self):
        """Seconds after its start at which the drain is overrunning: no move starts after timeout_s, and each
        move's engine is expected to end by per_vm_timeout_s (live) or its shutdown and copy deadlines (cold, at
        least 30 minutes a file) with 10 minutes more. Past it the drain starts nothing and says so, but still
        waits for the moves that run: a cold copy's own deadline grows with the disk (1 s per 10 MiB)."""
        p = self.p
        cold = p.get('cold_options') or {}
        cold_s = (cold.get('shutdown_timeout_s') or 120) + (cold.get('copy_timeout_s') or 1800)
        return p['timeout_s'] + max(p['per_vm_timeout_s'], cold_s) + 600

    def source_security(self):
        """This host's TLS state when the module runs on it (a local URI), else None (not known here)."""
        if not hasattr(self, '_source_security'):
            local = SEC.connection_transport(self.p['uri']) == 'local'
            self._source_security = SEC.host_security() if local else None
        return self._source_security

    def move_security(self, move):
        """{'source', 'dest'} TLS states for one move (a rollback moves back to this host)."""
        by_name = dict((d['name'], d.get('security')) for d in self.p['destinations'])
        if self.p.get('rollback'):
            return {'source': by_name.get(move.get('from')), 'dest': self.source_security()}
        return {'source': self.source_security(), 'dest': by_name.get(move.get('destination'))}

    def transports(self, moves):
        """Decide each live move's transport now, before anything changes; the refusals (what to configure)."""
        o = self.p.get('migrate_options') or {}
        c = self.p.get('cold_options') or {}
        uris = dict((d['name'], d['uri']) for d in self.p['destinations'])
        refused = []
        for m in moves:
            if m.get('method') == 'cold':
                # disks a cold move copies travel over the libvirt connections
                # (a rollback's moves do not know what they copy: count them as copying)
                here = m.get('from_uri') or self.p['uri']
                there = self.p['return_uri'] if self.p.get('rollback') else uris.get(m.get('destination'), '')
                over = [here, there] if m.get('copies_disks', True) else []
                t = SEC.plan_transport(c.get('tls', 'auto'), c.get('allow_plaintext', False), copies_over=over)
                m['transport'] = t['transport']
                if t['refused']:
                    refused.append('%s -> %s (cold): %s' % (m['name'], m.get('destination'), t['refused']))
                continue
            sec = self.move_security(m)
            t = SEC.plan_transport(o.get('tls', 'auto'), o.get('allow_plaintext', False), sec['source'], sec['dest'],
                                   src_label='this host', dest_label=m.get('destination') or 'the destination')
            m['transport'] = t['transport'] if t['encrypted'] is not None or not t['tls'] else 'tls (checked at start)'
            if t['refused']:
                refused.append('%s -> %s: %s' % (m['name'], m.get('destination'), t['refused']))
        return refused

    def journal(self, entry):
        """Append ENTRY to the journal once the drain runs. An OS error (a full disk) never abandons a move: it
        is kept, the drain goes on, and its result says the journal is incomplete (the module then fails)."""
        try:
            journal_append(self.p.get('journal'), entry)
        except OSError as e:
            with self.lock:
                self.journal_errors.append('cannot write the journal %s (%s of %s): %s' % (
                    self.p.get('journal'), entry.get('event'), entry.get('vm', 'the drain'), e.strerror or e))

    def said(self, out):
        """OUT with what could not be written on this host: journal_errors (the module fails on them: a later
        return of the VMs reads the journal) and warnings."""
        out['journal_errors'] = list(self.journal_errors)
        if self.journal_errors or self.status_errors:
            out['warnings'] = self.journal_errors + ['%s (the drain went on without it)' % e for e in self.status_errors]
        return out

    def write_status(self, data):
        """The progress file, best effort (write_json never raises): its first failure becomes a warning."""
        error = write_json(self.p.get('status_file'), data)
        if error:
            with self.lock:
                if error not in self.status_errors:
                    self.status_errors.append(error)

    def vm_status_path(self, name):
        base = self.p.get('status_file')
        return '%s.%s' % (base, name) if base else None

    def status(self, state, pending, left, plan):
        """The progress file: what runs (with the engine's phase and percent), what ended, what waits."""
        running = []
        for name, move in sorted(self.running.items()):
            vm = read_json(self.vm_status_path(name)) or {}
            running.append({'name': name, 'destination': move['destination'], 'method': move['method'],
                            'phase': vm.get('phase', 'starting'), 'percent': vm.get('percent'),
                            'elapsed_s': round(self.clock() - self.t0 - move['started_s'], 1)})
        done = [dict((k, v) for k, v in r.items() if k != 'decisions') for r in self.results]
        return {'state': state, 'pid': os.getpid(), 'tag': self.p.get('status_tag'),
                'elapsed_s': round(self.clock() - self.t0, 1),
                'running': running, 'done': done, 'pending': [m['name'] for m in pending],
                'left': left, 'predicted_total_s': plan.get('predicted_total_s'), 'total': len(plan['moves'])}

    # -- the drain ----------------------------------------------------------------------------------
    def approved(self, plan):
        """The approved PLAN, revalidated here and now (see revalidate): (plan to run, changes)."""
        return check_approved(self.cache, self.p, plan, self.p['non_live_policy'])

    def run(self, check_mode=False):
        p = self.p
        self.t0 = self.clock()
        started_at = round(self.now(), 3)
        changes = []
        uris = dict((d['name'], d['uri']) for d in p['destinations'])
        if p.get('rollback'):
            to_run = rollback_moves(read_journal(p.get('journal')), p.get('source_name') or SEC.redact_uri(p['uri']))
            for m in to_run:
                # the journal keeps URIs without passwords: reach each host as the destinations give it
                m['from_uri'] = uris.get(m.get('from')) or m['from_uri']
            # each VM comes back here: from where the journal says it went, to this host's URI as it reaches it
            for m in to_run:
                uris[m['destination']] = p['return_uri']
            plan = {'moves': [dict((k, v) for k, v in m.items() if k != 'from_uri') for m in to_run], 'left': {},
                    'predicted_total_s': None, 'refused': {}}
            left = []
        elif p.get('plan'):
            plan, changes = self.approved(p['plan'])
            to_run, left = split_plan(plan, p['non_live_policy'])
        else:
            plan = plan_evacuation(self.cache, dict(p, allow_cold=p['non_live_policy'] == 'cold'))
            to_run, left = split_plan(plan, p['non_live_policy'])
        refused = self.transports(to_run)
        if refused:
            raise PlaintextRefused('will not drain: %s' % ' | '.join(refused))
        out = {'plan': plan, 'left': left, 'changed': bool(to_run) or any(x['action'] == 'shutdown' for x in left),
               'started_at': started_at,
               'plan_lines': R.plan_lines(plan, p.get('source_name') or ''),
               'approved_plan': bool(p.get('plan')) and not p.get('rollback'), 'changes': changes}
        out['plan_lines'] += ['  changed since the plan was approved - %s' % c for c in changes]
        out['plan_lines'] += ['  %s: %s' % (x['name'], x['action']) for x in left if x['action'] == 'shutdown']
        out['to_do'] = len(to_run) + len([x for x in left if x['action'] == 'shutdown'])
        if check_mode:
            out['state'] = 'planned'
            return out
        # one drain per host, whatever journal each names (the host's UUID names its lock), and one writer
        # per journal (two hosts' drains must not share one)
        fds = [take_lock(host_lock_path(self.cache.get(p['uri']).host_uuid() or SEC.redact_uri(p['uri'])), self.now)]
        try:
            lock = (p.get('journal') or p.get('status_file') or '') + '.lock'
            if lock != '.lock':
                fds.append(take_lock(lock, self.now))
            return self._drain(plan, to_run, left, uris, out)
        finally:
            for fd in fds:
                release_lock(fd)

    def _drain(self, plan, to_run, left, uris, out):
        p = self.p
        try:
            journal_append(p.get('journal'), {'event': 'plan', 'time': self.now(), 'source': SEC.redact_uri(p['uri']),
                                              'moves': [dict((k, m[k]) for k in ('name', 'destination', 'method'))
                                                        for m in to_run], 'left': left})
        except OSError as e:
            raise LibvirtClientError('will not drain: the journal %s cannot be written (%s); nothing was moved'
                                     % (p.get('journal'), e.strerror or e))
        src = self.cache.get(p['uri'])
        for item in left:
            if item['action'] != 'shutdown':
                continue
            dom = src.lookup(item['name'])
            item['result'] = self._shutdown(dom)
            self.journal({'event': 'shutdown', 'time': self.now(), 'vm': item['name'], 'result': item['result']})
        pending = self.pending
        pending[:] = [dict(m, uri=uris[m['destination']]) for m in to_run]
        if p.get('rollback'):
            # the engine's source is where the VM is now; the moves' names stay as the journal has them
            pending[:] = [dict(m, uri=p['return_uri']) for m in to_run]
        deadline = self.t0 + p['timeout_s']
        threads = []
        flags = self.stop_flags
        # (an approved plan of a step gives this drain its share of the destinations the step's drains share)
        limits = dict(p, inbound_limits=(plan or {}).get('inbound_limits') or {})

        def step():
            """Start what the limits admit; True once nothing runs and nothing more will start."""
            failed = any(r['error'] or r['state'] not in ('migrated', 'migrated_after_recovery', 'already_there',
                                                          'cold_migrated', 'moved')
                         for r in self.results)
            if (p['stop_on_failure'] and failed) or self.clock() > deadline:
                flags['stop'] = True
            while True:
                with self.lock:
                    move = None if flags['stop'] else admit(pending, list(self.running.values()), limits)
                    if move is None:
                        break
                    pending.remove(move)
                    move['started_s'] = self.clock() - self.t0
                    self.running[move['name']] = move
                self.journal({'event': 'start', 'time': self.now(), 'vm': move['name'],
                              'destination': move['destination'], 'method': move['method'],
                              'uri': SEC.redact_uri(move['uri']), 'rollback': bool(p.get('rollback'))})
                t = threading.Thread(target=self._move, args=(move,))
                t.daemon = True
                t.start()
                threads.append(t)
            with self.lock:
                if not self.running and (flags['stop'] or not pending):
                    return True
            if p.get('status_file'):
                self.write_status(self.status('running', pending, left, plan))
            return False
        abandoned, overran = [], []
        if not wait_until(step, self.wait_limit_s(), 0.25, self.clock, self.sleep):
            # Past the drain's own limit nothing more starts, but a move that runs is never abandoned: a drain
            # that exits kills its move threads with it (a cold copy cut half-way leaves the guest shut off).
            # Each engine ends by its own deadlines (a live move's completion deadline and hard timeout, a cold
            # copy's 1 s per 10 MiB, libvirt's keepalive for a hung call): the drain waits for them, and says so.
            flags['stop'] = True
            with self.lock:
                overran = sorted(self.running)
            self.journal({'event': 'overrun', 'time': self.now(), 'running': overran})

            def ended():
                with self.lock:
                    if not self.running:
                        return True
                self.write_status(self.status('overrunning', pending, left, plan))
                return False
            if not wait_until(ended, MOVE_OVERRUN_LIMIT_S, 5.0, self.clock, self.sleep):
                # (only a move whose engine broke its own bounds gets here)
                with self.lock:
                    abandoned = sorted(self.running.values(), key=lambda m: m['name'])
                    self.running.clear()
        for t in threads:
            # (a move no longer in self.running has recorded its end: its thread is only returning)
            t.join(0 if abandoned else 10.0)
        for m in abandoned:
            line = summarize_result(m['name'], m, {'state': 'still_running'},
                                    'the drain stopped waiting for this move %d s after its own limit: its engine '
                                    'did not end it within its own deadlines and may still be moving it - see the '
                                    'journal and both hosts before acting' % MOVE_OVERRUN_LIMIT_S)
            line.update(start_s=round(m['started_s'], 2), end_s=None, decisions=None)
            self.results.append(line)
        not_started = [{'name': m['name'], 'action': 'not_started',
                        'reason': 'the drain stopped: %s' % ('a migration failed (stop_on_failure)'
                                                             if self.clock() <= deadline else 'timeout_s reached')}
                       for m in pending]
        left = left + not_started
        if overran:
            out['overran'] = overran
        try:
            still = sorted(d.name() for d in src.call('cannot list domains', src.conn.listAllDomains, 0) if d.isActive())
        except LibvirtClientError as e:
            # the moves ran and their results stand; only the check of what is left cannot be made
            return self._unverified(out, plan, left, e)
        if p.get('rollback'):
            back = [r['name'] for r in self.results if not r['error']]
            out.update(results=sorted(self.results, key=lambda r: r['start_s']), left=left, wall_s=round(
                self.clock() - self.t0, 2), changed=bool(back), failed_vms=[r['name'] for r in self.results if r['error']],
                still_running_on_source=still, verified=set(back) <= set(still),
                state='rolled_back' if back else 'nothing_moved')
            # (data, not HTML: the controller draws the timeline from the results - _report.timeline_html)
            out['report'] = {'table': R.table(out['results'], left),
                             'title': 'Rollback to %s' % (p.get('source_name') or SEC.redact_uri(p['uri']))}
            self.journal({'event': 'done', 'time': self.now(), 'state': out['state'], 'rollback': True})
            self.write_status(dict(self.status('finished', [], left, plan)))
            return self.said(out)
        expected = sorted(x['name'] for x in left if x['action'] in ('skip', 'not_started')) + \
            sorted(r['name'] for r in self.results if r['error'])
        results = sorted(self.results, key=lambda r: r['start_s'])
        out.update(results=results, left=left, still_running_on_source=still,
                   verified=set(still) <= set(expected),
                   wall_s=round(self.clock() - self.t0, 2),
                   changed=bool(results) or any(x['action'] == 'shutdown' for x in left))
        out['failed_vms'] = [r['name'] for r in results if r['error']]
        out['rerouted'] = list(self.rerouted)
        out['report'] = {'table': R.table(results, left),
                         'title': 'Evacuation of %s' % (p.get('source_name') or SEC.redact_uri(p['uri']))}
        # a drain that leaves VMs on the host is never a quiet success: 'incomplete' (the module fails
        # unless allow_incomplete), with each VM left and why
        out['state'] = 'evacuated' if not still else 'incomplete'
        out['moved'] = sorted(r['name'] for r in results if not r['error'])
        self.write_status(dict(self.status('finished', [], left, plan), summary={
            'state': out['state'], 'wall_s': out['wall_s'], 'still_running_on_source': still}))
        self.journal({'event': 'done', 'time': self.now(), 'state': out['state'], 'still_running_on_source': still})
        return self.said(out)

    def _unverified(self, out, plan, left, error):
        """The drain ran, but this host cannot be read any more to see what still runs on it."""
        p = self.p
        results = sorted(self.results, key=lambda r: r['start_s'])
        out.update(results=results, left=left, still_running_on_source=None, verified=False, state='unverified',
                   wall_s=round(self.clock() - self.t0, 2), changed=bool(results),
                   failed_vms=[r['name'] for r in results if r['error']],
                   moved=sorted(r['name'] for r in results if not r['error']),
                   unverified_because='cannot list the domains of the source after the drain: %s' % error.msg,
                   rerouted=list(self.rerouted))
        out['report'] = {'table': R.table(results, left),
                         'title': 'Evacuation of %s' % (p.get('source_name') or SEC.redact_uri(p['uri']))}
        self.journal({'event': 'done', 'time': self.now(), 'state': 'unverified', 'rollback': bool(p.get('rollback'))})
        self.write_status(dict(self.status('finished', [], left, plan), summary={
            'state': 'unverified', 'wall_s': out['wall_s'], 'still_running_on_source': None}))
        return self.said(out)

    def _shutdown(self, dom):
        """Policy shutdown: the collection's one shutdown policy (_power.shut_down) with the cold options' timeout
        and force - ACPI pressed every 5 s, powered off only with cold_options.force (a guest that did not stop is
        said so, and still runs here)."""
        cold = self.p.get('cold_options') or {}
        timeout = cold.get('shutdown_timeout_s') or 120
        try:
            if not dom.isActive():
                return 'already stopped'
            done, stuck = shut_down({'vm': dom}, timeout, bool(cold.get('force')), self.clock, sleep=self.sleep)
        except LibvirtClientError as e:
            return 'shutdown failed: %s' % e.msg
        if stuck:
            return ('shutdown failed: did not shut down within %s s (cold_options.force=true powers it off); it still '
                    'runs here' % timeout)
        return 'shut down' if done['vm']['how'] == 'clean' else 'powered off after %s s (cold_options.force)' % timeout


# Seconds past its own limit a drain waits for moves that still run before it hands them over (reported as
# still running): only an engine that broke its own bounds (a day) gets there.
MOVE_OVERRUN_LIMIT_S = 86400


class PlaintextRefused(Exception):
    """A move of the plan would send a guest's memory in the clear and nobody allowed it; nothing was done."""

    def __init__(self, msg):
        Exception.__init__(self, msg)
        self.msg = msg


class EvacuationRunning(Exception):
    pass


OK_STATES = ('migrated', 'migrated_after_recovery')


def rollback_moves(entries, here):
    """From a journal: the VMs that left this host and are still away (pure), as moves back.

    A VM counts as away after an 'end' event of a drain with a successful state, and as back after one
    of a rollback. Each move: name, destination (HERE, for the report), method, from_uri (where it is).
    """
    away = {}
    for e in entries:
        if e.get('event') == 'start' and not e.get('rollback'):
            away.setdefault('_starts', {})[e['vm']] = e
        if e.get('event') != 'end' or (e.get('result') or {}).get('state') not in OK_STATES:
            continue
        if e.get('rollback'):
            away.pop(e['vm'], None)
        else:
            start = away.get('_starts', {}).get(e['vm']) or {}
            away[e['vm']] = {'name': e['vm'], 'destination': here, 'method': e['result'].get('method') or 'live',
                             'from_uri': start.get('uri'), 'from': e['result'].get('destination'),
                             'memory_mib': 0}
    away.pop('_starts', None)
    return [m for _n, m in sorted(away.items()) if m['from_uri']]
