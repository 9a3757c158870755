# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The cluster plan on the controller, from one fact read per host (docs: cluster_questions.yml,
cluster_plan.yml)."""

from ansible.errors import AnsibleFilterError

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import cluster as CLUSTER
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import batch as BATCH
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import report as REPORT
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import rolling as ROLLING


def _reads(value, what):
    value = ROLLING.plain(value)
    if not isinstance(value, dict):
        raise AnsibleFilterError('%s expects {host: the cluster_facts result} (got %s)' % (what, type(value).__name__))
    return value


def _unusable(reads, answers, hosts):
    """Why the reads and answers of HOSTS cannot be planned from, each naming its host ([] when they can)."""
    problems = ['%s: not read (a destination or host to maintain must be a host of the group, read by cluster_facts)'
                % h for h in sorted(hosts) if h not in reads]
    problems += CLUSTER.read_problems(reads, sorted(set(hosts) & set(reads)))
    for h in sorted(hosts):
        a = answers.get(h)
        if not isinstance(a, dict) or a.get('version') is None:
            problems.append('%s: its answers are missing (it was left a question: a CPU definition its own VMs do not '
                            'run, a disk directory or a storage server)' % h)
        elif a.get('version') != CLUSTER.READ_VERSION:
            problems.append('%s: its answers are of format %s; this controller reads format %d' % (
                h, a.get('version'), CLUSTER.READ_VERSION))
    return problems


def cluster_questions(reads):
    """What every host is asked once all were read: each distinct CPU definition, directory and storage server."""
    reads = _reads(reads, 'cluster_questions')
    return CLUSTER.questions(dict((h, r) for h, r in reads.items() if isinstance(r, dict)))


def cluster_questions_left(asked, read):
    """Of the group's questions ASKED (cluster_questions), those left for the host whose fact read is READ: the CPU
    definitions its own VMs run were answered there. Nothing left: the host need not be asked."""
    asked, read = ROLLING.plain(asked), ROLLING.plain(read)
    if not isinstance(asked, dict):
        raise AnsibleFilterError('cluster_questions_left expects the cluster_questions result (got %s)'
                                 % type(asked).__name__)
    return CLUSTER.left_for(asked, read if isinstance(read, dict) else {})


def cluster_wave_order(reads, names):
    """NAMES in the wave's order: the host with the least memory of running VMs first, the order given among equals;
    a host without a usable read keeps its place after them."""
    reads = _reads(reads, 'cluster_wave_order')
    names = list(names or [])
    known = [h for h in names if not CLUSTER.read_problems(reads, [h])]
    return CLUSTER.wave_order(reads, known) + [h for h in names if h not in known]


def cluster_plan(reads, answers, steps, options=None, destinations=None, exclude_domains=None, return_vms='original',
                 wave=False):
    """Every drain of a run, planned on the controller in the run's order (see CLUSTER.plan_run)."""
    reads, answers = _reads(reads, 'cluster_plan'), _reads(answers or {}, 'cluster_plan (answers)')
    answers = CLUSTER.answers_of(reads, answers)
    steps = [[s] if isinstance(s, str) else s for s in ROLLING.plain(steps) or []]
    if not all(isinstance(s, list) for s in steps):
        raise AnsibleFilterError('cluster_plan: steps is a list of lists of host names (got %r)' % (steps,))
    if return_vms not in ('original', 'stay'):
        raise AnsibleFilterError('cluster_plan: return_vms is original or stay (got %r)' % (return_vms,))
    names = [h for s in steps for h in s]
    dests = list(destinations) if destinations else sorted(reads)
    problems = _unusable(reads, answers, set(names) | set(dests))
    problems += ['%s: named %d times in the steps' % (h, names.count(h)) for h in sorted(set(names))
                 if names.count(h) > 1]
    for step in steps:
        if not [d for d in dests if d not in step]:
            problems.append('%s: no destination outside %s (destinations: %s) - a drain needs another host to move '
                            'to' % (' + '.join(step), 'it' if len(step) == 1 else 'them', ', '.join(dests) or 'none'))
    if problems:
        return {'problems': problems, 'plans': {}}
    out = CLUSTER.plan_run(reads, answers, steps, ROLLING.plain(options) or {}, destinations=dests,
                           exclude_domains=list(exclude_domains or []), return_vms=return_vms, wave=bool(wave))
    plans = {}
    for h, plan in out['plans'].items():
        plans[h] = dict(plan, plan=plan, changes=[], lines=REPORT.plan_lines(plan, h))
    vms = sum(1 for r in reads.values() for vm in r.get('domains') or [] if vm.get('active'))
    out.update(plans=plans, problems=[], vms=vms,
               most_moves=max(out['moves_per_vm'].values() or [0]),
               lines=['%d VMs, %d moves (%.2f a VM), %.0f MiB moved; %s' % (
                   vms, out['moves'], out['moves'] / float(vms or 1), out['moved_mib'],
                   'the wave' if wave else 'each drain on the roomiest hosts')])
    return out


def cluster_batch(reads, answers, hosts, options=None, records=None, destinations=None, exclude_domains=None,
                  most=None, non_live_policy='skip', drained=None):
    """rolling_maintenance_batch auto: the most hosts out at once whose every step the cluster absorbs (see
    BATCH.auto_batch); a read or answer the plan cannot use is refused as cluster_plan refuses it."""
    reads, answers = _reads(reads, 'cluster_batch'), _reads(answers or {}, 'cluster_batch (answers)')
    answers = CLUSTER.answers_of(reads, answers)
    hosts = list(ROLLING.plain(hosts) or [])
    dests = list(destinations) if destinations else sorted(reads)
    drained = hosts if drained is None else list(ROLLING.plain(drained) or [])
    problems = _unusable(reads, answers, set(drained) | set(dests))
    if problems:
        return {'problems': problems, 'batch': 1, 'tried': [], 'lines': []}
    if most not in (None, ''):
        try:
            most = int(most)
        except (TypeError, ValueError):
            raise AnsibleFilterError('cluster_batch: most is a whole number of hosts (got %r)' % (most,))
    else:
        most = None
    out = BATCH.auto_batch(reads, answers, hosts, ROLLING.plain(options) or {}, records=ROLLING.plain(records),
                           destinations=dests, exclude_domains=list(exclude_domains or []), most=most,
                           non_live_policy=non_live_policy, drained=drained)
    out['problems'] = []
    return out


class FilterModule:  # pylint: disable=too-few-public-methods
    """The cluster plan's filters."""

    def filters(self):
        return {'cluster_questions': cluster_questions, 'cluster_questions_left': cluster_questions_left,
                'cluster_plan': cluster_plan,
                'cluster_wave_order': cluster_wave_order, 'cluster_batch': cluster_batch}
