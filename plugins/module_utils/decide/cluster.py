# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Drains planned from facts, on the controller: one fact read per hypervisor, then every drain of a run.

A rolling run reads each host once (the cluster_facts module, in parallel over forks): its host facts, its VMs,
the CPU definition each VM would ask a destination for, and a marker written in each directory that holds a disk.
The questions only a destination's own libvirt can answer are then asked once per distinct question: every host
compares the group's distinct CPU definitions (a handful, not VMs x hosts), says which markers it sees in the
group's disk directories, and whether it reaches the group's network storage servers. Everything else is pure:
the checks of checks, placement and schedule of planner. Cost grows with hosts x distinct kinds of host, not
hosts squared x VMs: destinations that answer alike are judged once per VM.

The per-drain plan has the format of the evacuation_plan module's (version PLAN_VERSION): the evacuate module runs
it as an approved plan and re-validates what can change (free memory, reachability, collisions).

The whole run is simulated in its order, step by step: each drain planned against the memory the earlier drains
left. With the wave (prefer_maintained), a VM leaving a host not yet maintained goes to a host already maintained
when one fits, so with return stay it moves once per run.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in any release.
"""

import hashlib
import json

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import checks as C
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import planner as P

# The drain plan's format: evacuate refuses a plan of another version.
PLAN_VERSION = 1
# the methods a drain runs without shutting the guest down
LIVE_METHODS = ('live', 'live_copy_storage', 'offline')
# why a VM of exclude_domains is left on the host
EXCLUDED = 'excluded from this drain (exclude_domains): it stays on this host'
# how many other destinations a drain's plan keeps per VM, ranked, for a destination lost before the drain starts
ALTERNATES = 3
# cluster_facts answers in this format; a newer one is refused by name
READ_VERSION = 1
HOST_FIELDS = ('uuid', 'memory_free', 'memory_total', 'domain_types', 'machine_types', 'libvirt_version',
               'hypervisor_version', 'bridges', 'networks')
VM_FIELDS = ('name', 'uuid', 'active', 'memory_kib', 'domain_type', 'arch', 'machine', 'cpu', 'interfaces', 'disks',
             'blockers')


def cpu_question(arch, machine, domain_type, xml):
    """The id of one CPU question (the same on every host: the same definition asks the same question)."""
    return hashlib.sha1(json.dumps([arch, machine, domain_type, xml]).encode('utf-8')).hexdigest()[:16]


def read_problems(reads, names):
    """Why the fact reads READS {host: read} cannot be planned from (one line per host and reason; [] when they
    can): a host of NAMES that answered nothing, a read of a newer format, missing fields."""
    out = []
    for h in names:
        r = reads.get(h)
        if not isinstance(r, dict) or not isinstance(r.get('host'), dict):
            out.append('%s: its fact read answered nothing usable (%s)' % (h, 'nothing' if r is None else
                                                                              type(r).__name__))
            continue
        if r.get('version') != READ_VERSION:
            out.append('%s: its fact read is of format %s; this controller plans from format %d (a collection of '
                       'another version on the host?)' % (h, r.get('version'), READ_VERSION))
            continue
        missing = [f for f in HOST_FIELDS if f not in r['host']]
        if missing:
            out.append('%s: its fact read has no %s' % (h, ', '.join(missing)))
        for vm in r.get('domains') or []:
            gone = [f for f in VM_FIELDS if f not in vm] if isinstance(vm, dict) else list(VM_FIELDS)
            if gone:
                out.append('%s: VM %s in its fact read has no %s' % (
                    h, vm.get('name', '?') if isinstance(vm, dict) else '?', ', '.join(gone)))
    return out


def unasked():
    """What a host answers when asked nothing (cluster_read.answer with no question)."""
    return {'version': READ_VERSION, 'cpus': {}, 'dirs': {}, 'servers': {}}


def left_for(asked, read):
    """Of the group's questions ASKED (questions()), those left for the host of READ after its fact read: the CPU
    definitions of its own VMs it answered there (cpu_answers) are not asked again."""
    answered = (read or {}).get('cpu_answers') or {}
    return {'cpus': dict((q, c) for q, c in ((asked or {}).get('cpus') or {}).items() if q not in answered),
            'dirs': list((asked or {}).get('dirs') or []), 'servers': dict((asked or {}).get('servers') or {})}


def answers_of(reads, answers):
    """Each host's answers to plan from: what it answered when asked (ANSWERS), or - when it was left no question
    (left_for), so not asked - nothing; with the CPU definitions it answered in its fact read. A host that was left
    a question and has no answer keeps what it has, which the plan refuses."""
    usable = dict((h, r) for h, r in reads.items() if isinstance(r, dict))
    asked = questions(usable)
    out = dict(answers)
    for h, r in usable.items():
        a = answers.get(h)
        if not (isinstance(a, dict) and a.get('version') == READ_VERSION):
            if any(left_for(asked, r).values()):
                continue
            a = unasked()
        out[h] = dict(a, cpus=dict(r.get('cpu_answers') or {}, **(a.get('cpus') or {})))
    return out


def questions(reads):
    """What every host is asked after the reads: {'cpus': {id: {arch, machine, domain_type, xml}}, 'dirs':
    [directory], 'servers': {key: {protocol, hosts}}} - each distinct once."""
    cpus, dirs, servers = {}, set(), {}
    for r in reads.values():
        cpus.update(r.get('cpu_questions') or {})
        dirs.update((r.get('markers') or {}).keys())
        for vm in r.get('domains') or []:
            for d in vm.get('disks') or []:
                if d.get('server'):
                    servers[d['server']] = {'protocol': d.get('protocol'), 'hosts': d.get('hosts') or []}
    return {'cpus': cpus, 'dirs': sorted(dirs), 'servers': servers}


def _finding(disk, state, method, reason):
    return {'target': disk.get('target'), 'type': disk.get('type'), 'source': disk.get('source'),
            'protocol': disk.get('protocol'), 'verdict': state, 'method': method, 'reason': reason}


def source_marks(read, answers):
    """{dir: (marker name, size), or {'error'}}: per directory, the marker that stands for the source's storage
    there - its own (written in its read), else one written by another host that the source sees there (a host
    that runs no VM in a directory wrote none; a VM that moved there later leaves from it: the same storage is
    the same for every host that sees one marker)."""
    out = {}
    for d, m in (read.get('markers') or {}).items():
        out[d] = m if m.get('error') else (m.get('name'), m.get('size'))
    for d, ans in ((answers or {}).get('dirs') or {}).items():
        if d in out and not isinstance(out[d], dict):
            continue
        if (ans or {}).get('error'):
            out.setdefault(d, {'error': '%s is not usable on the source: %s' % (d, ans['error'])})
        elif (ans or {}).get('seen'):
            out[d] = sorted(ans['seen'].items())[0]
    return out


def storage_findings(vm, marks, dst_name, dst_answers):
    """Per disk of VM (by target), as the shared-storage probe says it: from the marker that stands for the
    source's storage in the disk's directory (MARKS, source_marks) and whether DST sees it (DST_ANSWERS: its
    answers); a network disk's server as DST reaches it."""
    out = {}
    dirs = (dst_answers or {}).get('dirs') or {}
    for d in C.relevant_disks(vm.get('disks')):
        if d.get('type') == 'network':
            if not d.get('server'):
                out[d['target']] = _finding(d, 'unknown', 'network', 'network disk without a host to reach')
                continue
            ans = ((dst_answers or {}).get('servers') or {}).get(d['server'])
            if ans is None:
                out[d['target']] = _finding(d, 'unknown', 'network',
                                            '%s was not asked about %s' % (dst_name, d['server']))
            elif ans.get('error'):
                out[d['target']] = _finding(d, 'not_shared', 'network', 'the %s server does not answer from %s: %s'
                                            % (d.get('protocol'), dst_name, ans['error']))
            else:
                out[d['target']] = _finding(d, 'shared', 'network', 'network disk (%s); the server answers from %s'
                                            % (d.get('protocol'), dst_name))
        elif d.get('dir'):
            mark = marks.get(d['dir']) or {'error': 'no marker there'}
            ans = dirs.get(d['dir'])
            if isinstance(mark, dict):
                out[d['target']] = _finding(d, 'unknown', 'marker', 'cannot prove %s shared from the source: %s'
                                            % (d['dir'], mark['error']))
            elif ans is None:
                out[d['target']] = _finding(d, 'unknown', 'marker', '%s was not asked about %s' % (dst_name, d['dir']))
            elif ans.get('error'):
                out[d['target']] = _finding(d, 'not_shared', 'marker', '%s is not usable on the destination: %s'
                                            % (d['dir'], ans['error']))
            elif (ans.get('seen') or {}).get(mark[0]) == mark[1]:
                out[d['target']] = _finding(d, 'shared', 'marker', 'a marker written in %s on the source was seen '
                                            'on the destination' % d['dir'])
            elif mark[0] in (ans.get('seen') or {}):
                out[d['target']] = _finding(d, 'not_shared', 'marker', 'a marker of %d bytes shows %d bytes on the '
                                            'destination' % (mark[1], ans['seen'][mark[0]]))
            else:
                out[d['target']] = _finding(d, 'not_shared', 'marker', 'same path, different storage: a marker '
                                            'written in %s on the source is not there on the destination' % d['dir'])
        elif d.get('type') == 'volume':
            out[d['target']] = _finding(d, 'unknown', 'volume', 'volume %s/%s not found on the source'
                                        % (d.get('pool'), d.get('volume')))
        elif d.get('type') == 'block':
            out[d['target']] = _finding(d, 'unknown', 'none', 'block device %s: a marker cannot prove it is the '
                                        'same LUN' % d.get('source'))
        else:
            out[d['target']] = _finding(d, 'unknown', 'none', 'disk type %s is not probed' % d.get('type'))
    return out


# ---------------------------------------------------------------------------------------------------
# One drain's plan from verdicts: shared with the evacuation_plan module (which judges through libvirt)

def new_vm_entry():
    return {'memory_mib': 0, 'allowed': [], 'method': {}, 'refused': {}, 'copies': {}, 'storage': {}, 'uuid': None}


def decide(r, allow_cold):
    """One destination's verdict R on one VM (a check report: checks, storage, active, recommended, state_files) as
    the plan takes it: (method or None, copies disks?, storage verdicts, why refused or None, only a cold move?)."""
    # memory is the planner's business (it counts what it places): judge the rest
    others = [c for c in r['checks'] if c['check'] != 'memory']
    copy_needed = any(v.get('verdict') != 'shared' for v in (r.get('storage') or {}).values())
    method = r['recommended'] if r['recommended'] == 'already_there' else C.recommend(others, r['active'], copy_needed)
    cold_only = method == 'cold' and not allow_cold
    if cold_only:
        method = 'none'
    failing = [c['reason'] for c in r['checks'] if c['status'] == C.FAIL and c['check'] != 'memory']
    storage = dict((t, v.get('verdict')) for t, v in (r.get('storage') or {}).items())
    if method in LIVE_METHODS or method == 'cold':
        return method, copy_needed or bool(r.get('state_files')), storage, None, False
    if cold_only:
        return None, False, storage, ['only a cold migration could move it'] + failing, True
    return None, False, storage, failing or ['recommended: %s' % r['recommended']], False


def note_verdict(info, dest, r, allow_cold):
    """Add one destination's verdict R on one VM (see decide; with name, uuid, memory_mib) to the VM's plan entry
    INFO."""
    info['memory_mib'] = r['memory_mib'] or 0
    info['uuid'] = r.get('uuid') or info['uuid']
    method, copies, storage, refused, cold_only = decide(r, allow_cold)
    if cold_only:
        info['cold_at'] = info.get('cold_at', []) + [dest]
    if method:
        info['allowed'].append(dest)
        info['method'][dest] = method
        info['copies'][dest] = copies
        info['storage'][dest] = storage
    else:
        info['refused'][dest] = refused


def assemble_plan(names, per_vm, hosts, p, src_uuid, src_uri, stays=(), prefer=None):
    """One drain's plan (the evacuation_plan format) from each VM's verdicts PER_VM {name: entry} and the HOSTS it
    may go to ([{'name', 'free_mib', 'capacity_mib', 'groups'}]); P: the planning options (anti_affinity, pinned,
    headroom_mib, rate_mibps, max_*, overhead_s, fixed_s, move_times, allow_cold). PREFER: host names tried first
    (the wave: hosts already maintained), the others only for what does not fit there."""
    groups = group_of(p.get('anti_affinity'))
    vms = []
    for n in names:
        info = per_vm[n]
        vm = {'name': n, 'memory_mib': info['memory_mib'], 'allowed': info['allowed'], 'group': groups.get(n),
              'pinned': (p.get('pinned') or {}).get(n)}
        if not info['allowed']:
            vm['method'] = 'none'
            vm['reason'] = '; '.join('%s: %s' % (d, ', '.join(r)) for d, r in sorted(info['refused'].items()))
        vms.append(vm)
    placed = place_preferring(vms, hosts, prefer, p.get('headroom_mib', 0))
    moves = [{'name': n, 'source': 'source', 'dest': d, 'memory_mib': per_vm[n]['memory_mib']}
             for n, d in sorted(placed['placements'].items())]
    timeline, makespan = P.schedule(moves, p['rate_mibps'], p['max_outbound'], p['max_inbound'], p['max_total'],
                                    overhead_s=p.get('overhead_s', 2.0),
                                    durations=dict((k, float(v)) for k, v in (p.get('move_times') or {}).items()))
    if timeline:
        # the drain's own cost beyond its moves (start, verification, the source's check), measured: calibration
        makespan = round(makespan + (p.get('fixed_s') or 0.0), 3)
    alternates = ranked_alternates(per_vm, placed, hosts, groups, p.get('pinned') or {})
    out_moves = []
    for t in timeline:
        info = per_vm[t['name']]
        move = {'name': t['name'], 'uuid': info['uuid'], 'destination': t['dest'],
                'method': info['method'][t['dest']], 'copies_disks': info['copies'][t['dest']],
                'storage': info['storage'].get(t['dest'], {}),
                'memory_mib': info['memory_mib'], 'start_s': t['start_s'], 'end_s': t['end_s'],
                'alternates': alternates.get(t['name'], [])}
        if groups.get(t['name']):
            move['group'] = groups[t['name']]
        out_moves.append(move)
    return {'version': PLAN_VERSION, 'source': {'uuid': src_uuid, 'uri': src_uri},
            'allow_cold': bool(p.get('allow_cold')), 'headroom_mib': p.get('headroom_mib', 0),
            'moves': out_moves, 'left': dict(placed['unplaced'], **dict((n, EXCLUDED) for n in stays)),
            'predicted_total_s': makespan,
            'refused': dict((n, per_vm[n]['refused']) for n in names if per_vm[n]['refused']),
            'cold_only': sorted(n for n in names if not per_vm[n]['allowed'] and per_vm[n].get('cold_at')),
            'free_after_mib': placed['free_after']}


def ranked_alternates(per_vm, placed, hosts, groups, pinned, most=ALTERNATES):
    """Per VM placed, up to MOST other destinations it may go to if its own cannot take it when the drain starts:
    allowed by the same checks, with the most memory free after the plan first, none that holds (or is planned to
    receive) a VM of its anti-affinity group; a pinned VM has none. Each {'destination', 'method', 'copies_disks',
    'storage'}."""
    ranked = [h for h, _free in sorted(placed['free_after'].items(), key=lambda kv: (-kv[1], kv[0]))]
    at = dict((h['name'], set(h.get('groups') or ())) for h in hosts)
    for n, d in placed['placements'].items():
        if groups.get(n):
            at.setdefault(d, set()).add(groups[n])
    out = {}
    for n, chosen in placed['placements'].items():
        if pinned.get(n):
            continue
        info, g, alts = per_vm[n], groups.get(n), []
        for d in ranked:
            if d == chosen or d not in info['allowed'] or (g and g in at.get(d, ())):
                continue
            alts.append({'destination': d, 'method': info['method'][d], 'copies_disks': info['copies'][d],
                         'storage': info['storage'].get(d, {})})
            if len(alts) >= most:
                break
        out[n] = alts
    return out


def group_of(anti_affinity):
    """{vm: group} from an anti_affinity {group: [vm, ...]}."""
    out = {}
    for g, members in (anti_affinity or {}).items():
        for vm in members or []:
            out[vm] = g
    return out


def place_preferring(vms, hosts, prefer, headroom_mib):
    """planner.place, on the PREFER hosts first (when given) and on the others only for what did not fit there."""
    if prefer is None:
        return P.place(vms, hosts, headroom_mib=headroom_mib)
    prefer = set(prefer)
    first = [h for h in hosts if h['name'] in prefer]
    rest = [h for h in hosts if h['name'] not in prefer]
    out = P.place(vms, first, headroom_mib=headroom_mib)
    # (a VM that cannot move at all, or is pinned elsewhere, is not tried again)
    again = [v for v in vms if v['name'] in out['unplaced'] and v.get('method') != 'none'
             and not (v.get('pinned') and v['pinned'] in prefer)]
    unplaced = dict((n, why) for n, why in out['unplaced'].items() if n not in set(v['name'] for v in again))
    free_after = dict(out['free_after'])
    if again and rest:
        more = P.place(again, rest, headroom_mib=headroom_mib)
        out['placements'].update(more['placements'])
        unplaced.update(more['unplaced'])
        free_after.update(more['free_after'])
    else:
        unplaced.update((v['name'], out['unplaced'][v['name']]) for v in again)
        free_after.update((h['name'], round(float(h['free_mib']), 1)) for h in rest)
    return {'placements': out['placements'], 'unplaced': unplaced, 'free_after': free_after}


# ---------------------------------------------------------------------------------------------------
# The judge: every VM of a source against every destination, destinations that answer alike once

def _host_class(read, answers, cpu_ids):
    h = read['host']
    nets = tuple(sorted((n.get('name'), bool(n.get('active'))) for n in h.get('networks') or []))
    mt = tuple(sorted((k, tuple(v or ())) for k, v in (h.get('machine_types') or {}).items()))
    cpus = tuple(((answers or {}).get('cpus') or {}).get(q, 'not asked') for q in cpu_ids)
    servers = tuple(sorted((k, str((v or {}).get('error'))) for k, v in ((answers or {}).get('servers') or {}).items()))
    dirs = tuple(sorted((k, str((v or {}).get('error'))) for k, v in ((answers or {}).get('dirs') or {}).items()))
    return (tuple(h.get('domain_types') or ()), mt, h.get('libvirt_version'), h.get('hypervisor_version'),
            tuple(sorted(h.get('bridges') or ())), nets, cpus, servers, dirs)


class _ByKind:
    """A {destination: value} read through the destination's kind (one value per kind, not per host)."""

    def __init__(self, kind_of, values):
        self.kind_of, self.values = kind_of, values

    def __getitem__(self, dest):
        return self.values[self.kind_of[dest]]

    def get(self, dest, default=None):
        return self.values.get(self.kind_of.get(dest), default)


class Judge:
    """Verdicts of VMs against destinations from the reads and answers; one per kind of destination."""

    def __init__(self, reads, answers, allow_copy=True):
        self.reads, self.answers, self.allow_copy = reads, answers or {}, allow_copy
        cpu_ids = sorted(questions(reads)['cpus'])
        self.cls = {}
        classes = {}
        for h, r in reads.items():
            self.cls[h] = classes.setdefault(_host_class(r, self.answers.get(h), cpu_ids), len(classes))
        # who sees which marker: {dir: {(marker name, size): {host}}}
        self.seers = {}
        for h, a in self.answers.items():
            for d, ans in ((a or {}).get('dirs') or {}).items():
                for name, size in ((ans or {}).get('seen') or {}).items():
                    self.seers.setdefault(d, {}).setdefault((name, size), set()).add(h)
        # who defines which name, which UUID (collisions): as read, then as the simulated run moves VMs
        self.by_name, self.by_uuid, self.doms_at = {}, {}, {}
        for h, r in reads.items():
            for vm in r.get('domains') or []:
                self.defined(h, vm['name'], vm.get('uuid'), True)
        self.memo = {}
        self._marks = {}

    def marks(self, src):
        """source_marks of SRC, once."""
        if src not in self._marks:
            self._marks[src] = source_marks(self.reads[src], self.answers.get(src))
        return self._marks[src]

    def kinds(self, src, dests):
        """DESTS grouped by kind as seen from SRC (their class, and which of SRC's markers each sees):
        ({kind: [dest]}, {dest: kind})."""
        marks = sorted((d, m) for d, m in self.marks(src).items() if not isinstance(m, dict))
        sees = [self.seers.get(d, {}).get(m, ()) for d, m in marks]
        groups, kind_of = {}, {}
        for dst in dests:
            k = (self.cls[dst], tuple(dst in s for s in sees))
            groups.setdefault(k, []).append(dst)
            kind_of[dst] = k
        return groups, kind_of

    def report(self, src, vm, dst, kind=None):
        """VM (a VM record of SRC's read, or one that moved there) against DST of KIND, as check_domains reports it
        but for collisions (see clashes)."""
        key = (src, vm['name'], vm.get('uuid'), kind if kind is not None else self.kinds(src, [dst])[1][dst])
        r = self.memo.get(key)
        if r is None:
            s, d = self.reads[src]['host'], self.reads[dst]['host']
            q = vm.get('cpu_question')
            if q:
                ans = ((self.answers.get(dst) or {}).get('cpus') or {}).get(q, 'the destination was not asked')
                cpu_err, compared = (ans or None), True
            else:
                cpu_err, compared = None, False
            storage = storage_findings(vm, self.marks(src), dst, self.answers.get(dst))
            checks, _copy, rec = C.judge(s, vm, d, [], cpu_err, compared, storage, self.allow_copy)
            r = self.memo[key] = {'name': vm['name'], 'uuid': vm.get('uuid'), 'checks': checks, 'storage': storage,
                                  'memory_mib': C.kib_to_mib(vm['memory_kib']), 'active': vm['active'],
                                  'recommended': rec, 'state_files': bool(vm.get('tpm') or vm.get('nvram'))}
        return r

    def defined(self, host, name, uuid, present):
        """HOST defines the domain NAME/UUID (PRESENT) or no longer does (a move took it away)."""
        key = (name, uuid)
        at = self.doms_at.setdefault(host, {})
        at[key] = at.get(key, 0) + (1 if present else -1)
        if at[key] <= 0:
            del at[key]
        for index, k in ((self.by_name, name), (self.by_uuid, uuid)):
            if not k:
                continue
            if any((n == k if index is self.by_name else u == k) for n, u in at):
                index.setdefault(k, set()).add(host)
            else:
                index.get(k, set()).discard(host)

    def moved(self, vm, src, dst):
        """The simulated run moved VM from SRC to DST (a migration undefines it on its source)."""
        self.defined(src, vm['name'], vm.get('uuid'), False)
        self.defined(dst, vm['name'], vm.get('uuid'), True)

    def clashes(self, vm, dests):
        """{dest: why} for the DESTS that define a domain of VM's name or UUID now (they cannot take it)."""
        out = {}
        for dst in (self.by_name.get(vm['name'], set()) | self.by_uuid.get(vm.get('uuid'), set())) & dests:
            there = [(n, u, True) for n, u in self.doms_at.get(dst, {})
                     if n == vm['name'] or (vm.get('uuid') and u == vm.get('uuid'))]
            if there:
                out[dst] = C.check_collision(vm['name'], vm.get('uuid'), there)['reason']
        return out

    def entry(self, src, vm, groups, kind_of, dest_set, allow_cold, shared):
        """The plan entry of VM leaving SRC for the destinations grouped by kind (GROUPS, KIND_OF): what
        note_verdict builds per destination, built per kind. SHARED: a cache of allowed sets (VMs alike share
        one)."""
        info = new_vm_entry()
        methods, copies, storage, ok = {}, {}, {}, []
        for k, members in groups.items():
            r = self.report(src, vm, members[0], k)
            info['memory_mib'] = r['memory_mib'] or 0
            info['uuid'] = r.get('uuid') or info['uuid']
            method, copy_disks, verdicts, refused, cold_only = decide(r, allow_cold)
            if cold_only:
                info['cold_at'] = info.get('cold_at', []) + members
            if method:
                methods[k], copies[k], storage[k] = method, copy_disks, verdicts
                ok.append(k)
            else:
                for d in members:
                    info['refused'][d] = refused
        clash = self.clashes(vm, dest_set)
        for d, why in clash.items():
            info['refused'][d] = [why]
        key = (tuple(ok), tuple(sorted(clash)))
        if key not in shared:
            shared[key] = frozenset(d for k in ok for d in groups[k] if d not in clash)
        info['allowed'] = shared[key]
        info['method'], info['copies'], info['storage'] = (_ByKind(kind_of, methods), _ByKind(kind_of, copies),
                                                           _ByKind(kind_of, storage))
        return info


# ---------------------------------------------------------------------------------------------------
# The run: each step's drains in order, against the memory the earlier ones left

def plan_options(p):
    """The planning options with their defaults (the evacuation_plan module's)."""
    out = {'headroom_mib': 0, 'rate_mibps': 1024.0, 'overhead_s': 2.0, 'fixed_s': 0.0, 'move_times': {},
           'max_outbound': 2, 'max_inbound': 2, 'max_total': 4, 'allow_cold': False, 'anti_affinity': {},
           'pinned': {}, 'copy_storage': 'auto'}
    out.update(dict((k, v) for k, v in (p or {}).items() if v is not None))
    return out


def plan_run(reads, answers, steps, p=None, destinations=None, exclude_domains=(), return_vms='original',
             wave=False):
    """Every drain of a rolling run, planned in order from the fact reads.

    READS {host: cluster_facts read}; ANSWERS {host: cluster_facts answers}; STEPS [[host, ...]]: the hosts
    maintained, a step at a time (those of a step are out together: none receives from another, and each drain
    of the step counts what the earlier ones of the step placed); P: the planning options (plan_options);
    DESTINATIONS: the hosts that may receive (default: every host read); EXCLUDE_DOMAINS: VMs left where they
    are; RETURN_VMS original (each VM goes home after its host's maintenance) or stay; WAVE: VMs go to hosts
    already maintained first, the others only for what does not fit there.
    Returns {'plans': {host: plan}, 'moves_per_vm': {vm: n}, 'moves': n, 'moved_mib': n, 'order': [host]}.
    The memory of hosts and VMs is simulated along the run: a plan made for a later step counts what the earlier
    ones moved (with return stay a VM that landed on a host not yet maintained moves again with it).
    """
    p = plan_options(p)
    judge = Judge(reads, answers, allow_copy=p.get('copy_storage') != 'none')
    receivers = [d for d in (destinations if destinations is not None else sorted(reads)) if d in reads]
    # the simulated cluster: free memory per host, the VMs each runs (with their home), where each VM is
    free = dict((h, r['host']['memory_free'] / (1024.0 * 1024)) for h, r in reads.items())
    capacity = dict((h, r['host']['memory_total'] / (1024.0 * 1024)) for h, r in reads.items())
    running = dict((h, [(vm, h) for vm in r.get('domains') or [] if vm.get('active')]) for h, r in reads.items())
    groups = group_of(p.get('anti_affinity'))
    host_groups = dict((h, {}) for h in reads)
    for h, vms in running.items():
        for vm, _home in vms:
            if vm['name'] in groups:
                host_groups[h][groups[vm['name']]] = host_groups[h].get(groups[vm['name']], 0) + 1
    away = {}          # home -> [(vm, where it is)]
    maintained, plans, moves_per_vm, moved_mib = [], {}, {}, 0.0
    excluded = set(exclude_domains or ())

    def move(vm, home, src, dst):
        judge.moved(vm, src, dst)
        mib = C.kib_to_mib(vm['memory_kib'])
        running[dst].append((vm, home))
        free[dst] -= mib
        free[src] += mib
        for h, sign in ((dst, 1), (src, -1)):
            g = groups.get(vm['name'])
            if g:
                host_groups[h][g] = host_groups[h].get(g, 0) + sign
        moves_per_vm[vm['name']] = moves_per_vm.get(vm['name'], 0) + 1
        return mib

    for step in steps:
        outs = set(step)
        dests = [d for d in receivers if d not in outs]
        dest_set = set(dests)
        for src in step:
            here = running.get(src, [])
            names = [vm['name'] for vm, _home in here if vm['name'] not in excluded]
            stays = [vm['name'] for vm, _home in here if vm['name'] in excluded]
            kinds, kind_of = judge.kinds(src, dests)
            shared = {}
            per_vm = dict((vm['name'], judge.entry(src, vm, kinds, kind_of, dest_set, p.get('allow_cold'), shared))
                          for vm, _home in here if vm['name'] not in excluded)
            hosts = [{'name': d, 'free_mib': free[d], 'capacity_mib': capacity[d],
                      'groups': [g for g, n in host_groups[d].items() if n > 0]} for d in dests]
            prefer = [d for d in maintained if d in dest_set] if wave else None
            plan = assemble_plan(names, per_vm, hosts, p, reads[src]['host']['uuid'], reads[src]['host'].get('uri'),
                                 stays=stays, prefer=prefer)
            plans[src] = plan
            # the simulated cluster after this drain
            by_name = dict((vm['name'], (vm, home)) for vm, home in here)
            for m in plan['moves']:
                vm, home = by_name[m['name']]
                moved_mib += move(vm, home, src, m['destination'])
                away.setdefault(home, []).append((vm, m['destination']))
            moved = set(m['name'] for m in plan['moves'])
            running[src] = [x for x in here if x[0]['name'] not in moved]
        if len(step) > 1:
            share_inbound(step, plans, p)
            for src in step:
                # (drains of one step rerouting on their own could meet on one alternate: memory, anti-affinity and
                # inbound shares are the step's, planned together - a lost destination leaves their VMs instead)
                plans[src]['planned_with'] = list(step)
                for m in plans[src]['moves']:
                    m['alternates'] = []
        maintained.extend(step)
        for src in step if return_vms == 'original' else ():
            for vm, where in away.pop(src, []):
                if where == src:
                    continue
                running[where] = [x for x in running[where] if x[0]['name'] != vm['name']]
                moved_mib += move(vm, src, where, src)
    return {'plans': plans, 'moves_per_vm': moves_per_vm, 'moves': sum(moves_per_vm.values()),
            'moved_mib': round(moved_mib, 1), 'order': [h for s in steps for h in s]}


def share_inbound(step, plans, p):
    """The drains of one STEP run at once: a destination several of them send to gets its inbound limit split
    between them - each plan's 'inbound_limits' {destination: its share}, its schedule predicted with it. A
    destination more drains send to than it has slots is said in each one's 'inbound_over' (not a step: the
    rolling plan takes them one at a time)."""
    senders = {}
    for src in step:
        for m in plans[src]['moves']:
            senders.setdefault(m['destination'], [])
            if src not in senders[m['destination']]:
                senders[m['destination']].append(src)
    for d, srcs in sorted(senders.items()):
        if len(srcs) < 2:
            continue
        share = int(p['max_inbound']) // len(srcs)
        over = '%s would receive from %s at once, above its inbound limit of %d' % (
            d, ' + '.join(srcs), int(p['max_inbound']))
        for src in srcs:
            if share < 1:
                plans[src].setdefault('inbound_over', []).append(over)
            plans[src].setdefault('inbound_limits', {})[d] = max(1, share)
    for src in step:
        plan = plans[src]
        if not plan.get('inbound_limits'):
            continue
        moves = [{'name': m['name'], 'source': 'source', 'dest': m['destination'], 'memory_mib': m['memory_mib']}
                 for m in plan['moves']]
        timeline, makespan = P.schedule(moves, p['rate_mibps'], p['max_outbound'], p['max_inbound'], p['max_total'],
                                        overhead_s=p.get('overhead_s', 2.0),
                                        durations=dict((k, float(v)) for k, v in (p.get('move_times') or {}).items()),
                                        max_in_by=plan['inbound_limits'])
        when = dict((t['name'], t) for t in timeline)
        for m in plan['moves']:
            m['start_s'], m['end_s'] = when[m['name']]['start_s'], when[m['name']]['end_s']
        plan['moves'].sort(key=lambda m: (m['start_s'], m['name']))
        plan['predicted_total_s'] = round(makespan + (p.get('fixed_s') or 0.0), 3) if timeline else 0.0


def wave_order(reads, names):
    """NAMES in the order the wave takes them: the host with the least memory of running VMs first (its VMs find
    room; once maintained it takes the next one's), the order given among equals."""
    pos = dict((h, i) for i, h in enumerate(names))

    def running_kib(h):
        return sum(vm.get('memory_kib') or 0 for vm in reads[h].get('domains') or [] if vm.get('active'))
    return sorted(names, key=lambda h: (running_kib(h), pos[h]))
