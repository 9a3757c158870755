# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The drain's plan: its options and their checks, the plan made here (every VM checked against every destination,
then the planner's placement and schedule, one connection per host) or an approved one revalidated against the
hosts as they are now, the policy's split of it into moves to run and VMs left, and each move's transport decided
before anything moves.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import connection as CLIENT
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import report as R
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import transport as SEC
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide.cluster import (
    EXCLUDED,
    PLAN_VERSION,
    assemble_plan,
    new_vm_entry,
    note_verdict,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.check_run import check_domains
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.drain_files import read_journal, return_moves

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
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.cold import (  # pylint: disable=import-outside-toplevel
        COLD_ARGSPEC, COLD_SET_BY_THE_DRAIN)
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import live as M  # pylint: disable=import-outside-toplevel
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


def plan_to_run(cache, p):
    """What the drain runs: (plan, moves to run, VMs left with what is done with them, changes since the plan was
    approved, each destination's URI by name). A return's moves come from the journal (each VM back from where
    it went), an approved plan is revalidated here and now (check_approved), else the plan is made here."""
    changes = []
    uris = dict((d['name'], d['uri']) for d in p['destinations'])
    if p.get('return_home'):
        to_run = return_moves(read_journal(p.get('journal')), p.get('source_name') or SEC.redact_uri(p['uri']))
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
        plan, changes = check_approved(cache, p, p['plan'], p['non_live_policy'])
        to_run, left = split_plan(plan, p['non_live_policy'])
    else:
        plan = plan_evacuation(cache, dict(p, allow_cold=p['non_live_policy'] == 'cold'))
        to_run, left = split_plan(plan, p['non_live_policy'])
    return plan, to_run, left, changes, uris


def refused_transports(p, moves, move_security):
    """Decide each live move's transport now, before anything changes (MOVE_SECURITY(move): the TLS states of its
    two hosts, {'source', 'dest'}); the refusals (what to configure)."""
    o = p.get('migrate_options') or {}
    c = p.get('cold_options') or {}
    uris = dict((d['name'], d['uri']) for d in p['destinations'])
    refused = []
    for m in moves:
        if m.get('method') == 'cold':
            # disks a cold move copies travel over the libvirt connections
            # (a return's moves do not know what they copy: count them as copying)
            here = m.get('from_uri') or p['uri']
            there = p['return_uri'] if p.get('return_home') else uris.get(m.get('destination'), '')
            over = [here, there] if m.get('copies_disks', True) else []
            t = SEC.plan_transport(c.get('tls', 'auto'), c.get('allow_plaintext', False), copies_over=over)
            m['transport'] = t['transport']
            if t['refused']:
                refused.append('%s -> %s (cold): %s' % (m['name'], m.get('destination'), t['refused']))
            continue
        sec = move_security(m)
        t = SEC.plan_transport(o.get('tls', 'auto'), o.get('allow_plaintext', False), sec['source'], sec['dest'],
                               src_label='this host', dest_label=m.get('destination') or 'the destination')
        m['transport'] = t['transport'] if t['encrypted'] is not None or not t['tls'] else 'tls (checked at start)'
        if t['refused']:
            refused.append('%s -> %s: %s' % (m['name'], m.get('destination'), t['refused']))
    return refused


def plan_result(p, plan, to_run, left, changes, started_at):
    """The drain's result as planned (all of it in check mode; the drain adds what it did)."""
    out = {'plan': plan, 'left': left, 'changed': bool(to_run) or any(x['action'] == 'shutdown' for x in left),
           'started_at': started_at,
           'plan_lines': R.plan_lines(plan, p.get('source_name') or ''),
           'approved_plan': bool(p.get('plan')) and not p.get('return_home'), 'changes': changes}
    out['plan_lines'] += ['  changed since the plan was approved - %s' % c for c in changes]
    out['plan_lines'] += ['  %s: %s' % (x['name'], x['action']) for x in left if x['action'] == 'shutdown']
    out['to_do'] = len(to_run) + len([x for x in left if x['action'] == 'shutdown'])
    return out
