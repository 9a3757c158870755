# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Runs one live migration: plan, start, poll the job at several Hz, apply the strategy decisions,
commit (destination confirmed running before the source definition goes) or roll back (the guest
keeps running on the source, nothing left on the destination). The only place that calls libvirt's
migrate, abort and post-copy switch.

LiveMigration (here: options, checks, plan, run) is the entry point; it hands each stage to a part given
the engine itself: live_watch.MigrationMonitor (the monitor loop), live_commit.CommitRollback (commit or
rollback), live_postcopy.PostcopyRecovery (a failed post-copy resumed); live_shared holds what they share.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

import json
import os
import threading
import time

from urllib.parse import urlparse

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import features as compat
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import strategy as S
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import transport as security
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide.checks import FAIL, relevant_disks
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.check_run import check_domains
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.storage_proof import reprove_shared
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import wait_until
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.live_commit import CommitRollback
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.live_postcopy import PostcopyRecovery
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.live_shared import MigrationError, host_facts
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.live_watch import MigrationMonitor

POSITIVE = ('bandwidth_mibps', 'postcopy_bandwidth_mibps', 'expected_bandwidth_mibps', 'switchover_bandwidth_mibps',
            'max_downtime_ms', 'downtime_steps', 'parallel_connections', 'timeout_per_gib_s', 'min_timeout_s',
            'hard_timeout_s', 'stall_iterations', 'dead_link_s', 'poll_interval_s')
NOT_NEGATIVE = ('downtime_step_delay_s', 'downtime_step_delay_s_per_gib', 'dirty_rate_sample_s', 'headroom_mib',
                'postcopy_recovery_attempts')


# The options the migrate_vm role passes through from migrate_vm_options (its argument spec's sub-options
# are generated from these by docs/make_role_options.py; a unit test checks its tasks pass the same).
ROLE_MIGRATE_VM_OPTIONS = ('migration_uri', 'bandwidth_mibps', 'postcopy_bandwidth_mibps', 'expected_bandwidth_mibps',
                           'switchover_bandwidth_mibps', 'max_downtime_ms', 'parallel_connections', 'compression',
                           'tls', 'allow_plaintext', 'copy_storage', 'completion', 'allow_postcopy', 'final_action',
                           'hard_timeout_s', 'tuning', 'headroom_mib', 'status_file')
# What a drain sets itself in each live move (from per_vm_timeout_s, its status_file and its own headroom_mib - one
# headroom per drain, for its plan and every move's own check): not in migrate_options.
SET_BY_THE_DRAIN = ('hard_timeout_s', 'status_file', 'headroom_mib')


# How the engine drives convergence and watches a move: the migrate module's (and migrate_options') tuning dict.
TUNING_ARGSPEC = dict(
    downtime_steps=dict(type='int', default=5),
    downtime_step_delay_s=dict(type='float'),
    downtime_step_delay_s_per_gib=dict(type='float', default=8.0),
    timeout_per_gib_s=dict(type='float', default=150),
    min_timeout_s=dict(type='float', default=30),
    stall_iterations=dict(type='int', default=2),
    dead_link_s=dict(type='float', default=5),
    poll_interval_s=dict(type='float', default=0.25),
    dirty_rate_sample_s=dict(type='int', default=1),
    postcopy_recovery_attempts=dict(type='int', default=8),
)


def flat_options(params):
    """PARAMS with its tuning dict's keys (each at its default unless given) among the others: what the engine reads."""
    out = option_defaults(TUNING_ARGSPEC)
    out.update((k, v) for k, v in params.items() if k != 'tuning')
    out.update(params.get('tuning') or {})
    return out


def live_options(given):
    """The engine's options for a live move given as GIVEN (the drain's migrate_options): every default, then GIVEN."""
    spec = migration_argspec()
    spec.pop('tuning')
    opts = option_defaults(spec)
    opts.update(given or {})
    return flat_options(opts)


def typed_options(spec, given):
    """GIVEN (a dict of SPEC's options, e.g. the drain's migrate_options) typed as a module types its own options:
    (the keys given, each converted - a tuning dict filled with its defaults -, the errors)."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # pylint: disable=import-outside-toplevel
    given = dict(given or {})
    result = ArgumentSpecValidator(spec).validate(given)
    typed = dict((k, v) for k, v in result.validated_parameters.items() if k in given)
    return typed, [str(e) for e in result.error_messages]


def option_problems(given):
    """Keys of GIVEN (a migrate_options dict) the migrate module does not know, tuning's included."""
    unknown = sorted(set(given) - set(migration_argspec()))
    tuning = given.get('tuning')
    if tuning is not None and not isinstance(tuning, dict):
        return ['tuning must be a dict (got %s)' % type(tuning).__name__]
    unknown += ['tuning.%s' % k for k in sorted(set(tuning or {}) - set(TUNING_ARGSPEC))]
    return ['unknown options: %s' % ', '.join(unknown)] if unknown else []


def migration_argspec():
    """The migrate module's options but domain, dest_uri and the connection (the evacuation reuses them)."""
    spec = dict(
        migration_uri=dict(type='str'),
        p2p=dict(type='bool', default=True),
        persistent=dict(type='bool', default=True),
        undefine_source=dict(type='bool', default=True),
        bandwidth_mibps=dict(type='int'),
        postcopy_bandwidth_mibps=dict(type='int'),
        expected_bandwidth_mibps=dict(type='int'),
        switchover_bandwidth_mibps=dict(type='int'),
        max_downtime_ms=dict(type='int', default=300),
        parallel_connections=dict(type='int'),
        compression=dict(type='str'),
        copy_storage=dict(type='str', choices=['auto', 'all', 'incremental', 'none'], default='auto'),
        completion=dict(type='str', choices=['auto', 'precopy', 'hybrid', 'postcopy', 'converge'], default='auto'),
        allow_postcopy=dict(type='bool', default=False),
        final_action=dict(type='str', choices=['auto', 'postcopy', 'converge', 'pause', 'abort'], default='auto'),
        hard_timeout_s=dict(type='float'),
        headroom_mib=dict(type='int', default=1024),
        tuning=dict(type='dict', default={}, options=TUNING_ARGSPEC),
        status_file=dict(type='path'),
    )
    spec.update(security.TRANSPORT_ARGSPEC)
    return spec


def validate(params):
    """Bad input is refused before anything happens: a list of problems."""
    params = flat_options(params)
    problems = ['%s must be greater than 0 (got %s)' % (k, params[k]) for k in POSITIVE
                if params.get(k) is not None and params[k] <= 0]
    problems += ['%s must not be negative (got %s)' % (k, params[k]) for k in NOT_NEGATIVE
                 if params.get(k) is not None and params[k] < 0]
    if params['completion'] in ('postcopy', 'hybrid') and not params['allow_postcopy']:
        problems.append('completion=%s needs allow_postcopy=true: if the network fails during post-copy the '
                        'guest is lost' % params['completion'])
    if params['final_action'] == 'postcopy' and not params['allow_postcopy']:
        problems.append('final_action=postcopy needs allow_postcopy=true')
    if params['migration_uri']:
        problems += migration_uri_problems(params['migration_uri'])
    try:
        security.normalize_mode(params.get('tls'))
    except ValueError as e:
        problems.append(str(e))
    if (params.get('parallel_connections') or 0) > MAX_PARALLEL:
        problems.append('parallel_connections must be at most %d: QEMU counts multifd channels in a byte (got %s)'
                        % (MAX_PARALLEL, params['parallel_connections']))
    problems += file_option_problems(params, ('status_file',))
    if params.get('dest_uri'):
        scheme = params['dest_uri'].split('://', 1)[0].lower() if '://' in params['dest_uri'] else ''
        if scheme.split('+', 1)[0] not in DEST_DRIVERS:
            problems.append("dest_uri must be a libvirt URI of the destination's QEMU driver, e.g. "
                            "qemu+tls://host/system or qemu+tcp://host/system (got %s)" % security.redact_uri(params['dest_uri']))
    return problems


def file_option_problems(params, names):
    """Files the module will write (NAMES of PARAMS): refused before anything changes when their directory
    is missing or not writable here, instead of failing half-way with an OS error."""
    problems = []
    for name in names:
        path = params.get(name)
        if not path:
            continue
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            problems.append('%s %s: its directory %s does not exist on this host' % (name, path, directory))
        elif not os.access(directory, os.W_OK | os.X_OK):
            problems.append('%s %s: its directory %s is not writable here' % (name, path, directory))
        elif os.path.isdir(path):
            problems.append('%s %s is a directory: give a file path' % (name, path))
    return problems


def make_dirs(params, names):
    """The missing directories of the files NAMES of PARAMS, made 0700 (a drain's journal and status file); what
    could not be made."""
    problems = []
    for name in names:
        if not params.get(name):
            continue
        directory = os.path.dirname(os.path.abspath(params[name]))
        if not os.path.isdir(directory):
            try:
                os.makedirs(directory, 0o700)
            except OSError as e:
                problems.append('%s %s: cannot make its directory %s: %s' % (name, params[name], directory, e))
    return problems


MAX_PARALLEL = 255
MIGRATION_SCHEMES = ('tcp', 'rdma', 'unix')
DEST_DRIVERS = ('qemu', 'test')


def migration_uri_problems(uri):
    """What is wrong with a migration_uri (the address QEMU's stream goes to), before libvirt sees it."""
    if '://' not in uri:
        return ['migration_uri must look like tcp://host[:port] (got %s)' % uri]
    try:
        parsed = urlparse(uri)
    except ValueError as e:     # e.g. an unclosed IPv6 bracket
        return ['migration_uri does not parse (%s; got %s)' % (e, uri)]
    if parsed.scheme not in MIGRATION_SCHEMES:
        return ['migration_uri scheme %r is not one QEMU migrates over (%s; got %s)'
                % (parsed.scheme, ', '.join(MIGRATION_SCHEMES), uri)]
    if parsed.scheme == 'unix':
        return [] if parsed.path else ['migration_uri unix:// needs a socket path (got %s)' % uri]
    try:
        port = parsed.port
    except ValueError:
        return ['migration_uri has a port that is not a number from 1 to 65535 (got %s)' % uri]
    if not parsed.hostname:
        return ['migration_uri needs a host (got %s)' % uri]
    if port is not None and not 0 < port < 65536:
        return ['migration_uri has a port that is not a number from 1 to 65535 (got %s)' % uri]
    return []


def option_defaults(spec):
    return dict((k, v.get('default')) for k, v in spec.items())


def start_dirty_rate(dom, seconds):
    """Have QEMU start measuring the guest's dirty rate over SECONDS (it runs while other work goes on);
    False when this QEMU or libvirt cannot."""
    if not seconds or not hasattr(dom, 'startDirtyRateCalc'):
        return False
    try:
        dom.startDirtyRateCalc(int(seconds), 0)
    except LibvirtClientError:
        return False
    return True


def read_dirty_rate(client, dom, seconds, clock=time.monotonic, sleep=time.sleep):
    """The dirty rate in bytes/s of a measurement start_dirty_rate began (waiting for its end, SECONDS + 5
    at most); None if it gives none."""
    def measured():
        stats = driver.dirty_rate(client.conn, dom)
        if stats.get('dirtyrate.calc_status') == 2:
            return {'rate': int(stats.get('dirtyrate.megabytes_per_second', 0)) * S.MIB}
        return None
    try:
        found = wait_until(measured, seconds + 5, 0.1, clock, sleep)
    except LibvirtClientError:
        return None
    return found['rate'] if found else None


def await_slot(engine, since):
    """A drain's gate, once the checks, the dirty-rate sample and the plan are done and before anything changes:
    ENGINE.on_ready() returns True once the move has its migration slot (the wait since SINCE is the phase
    slot_wait_s), False when the move is not to start - then MigrationError says nothing was changed. Nothing to
    wait for outside a drain (no on_ready)."""
    if engine.on_ready is None:
        return
    if not engine.on_ready():
        engine.result['changed'] = False
        raise MigrationError('will not migrate %s (nothing was changed): the drain stopped before a migration slot was '
                             'free for it' % engine.name, engine.result)
    engine.phase('slot_wait_s', since)


def write_status(path, data):
    """Write JSON atomically (a reader never sees half a file); nothing when PATH is empty. A progress file
    is never worth a move: an OS error (a full disk, a directory removed) is returned as text, never raised
    in the middle of a migration."""
    if not path:
        return None
    tmp = path + '.tmp'
    try:
        # readable by its owner only: it names hosts, guests and their URIs
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, 'w') as f:
            json.dump(data, f)
        os.rename(tmp, path)
    except OSError as e:
        return 'cannot write the status file %s: %s' % (path, e.strerror or e)
    return None


def _postcopy_failed(dom):
    """The source side of a post-copy migration that failed and waits to be resumed."""
    try:
        state, reason = dom.state()[:2]
    except LibvirtClientError:
        return False
    return driver.postcopy_failed(state, reason)


class LiveMigration:
    """One live migration of one domain; construct, then call run(check_mode)."""

    def __init__(self, src, dst, name, opts, clock=time.monotonic, sleep=time.sleep, hosts_security=None,
                 on_ready=None):
        self.src, self.dst, self.name, self.o = src, dst, name, flat_options(opts)
        self.on_ready = on_ready        # a drain's gate (await_slot)
        # {'source': .., 'dest': ..}: each host's transport.host_security() state, None when unknown; the
        # source's is read here when its connection is local (the module runs on the source)
        self.hosts_security = dict(hosts_security or {})
        self.transport = None
        self.clock, self.sleep = clock, sleep
        self.t0 = None
        self.decisions = []
        self.history = []
        self.events = []
        self.result = {'domain': name, 'changed': False}
        self._versions = {}
        self.started_running = True     # (read with the guest's size before the move)
        # its parts, each given this engine (its options, clients, clock, result and decisions are read here)
        self.monitor = MigrationMonitor(self)       # the monitor loop: start, watch, apply the strategy
        self.settle = CommitRollback(self)          # commit, or roll back
        self.postcopy = PostcopyRecovery(self)      # a failed post-copy resumed, never rolled back

    def _version(self, side, client, call='getLibVersion'):
        """SIDE's libvirt version (CALL getVersion: its hypervisor's), read once (later checks run while a link
        may be dead); None when it cannot be read - then libvirt itself refuses what it cannot do."""
        key = (side, call)
        if key not in self._versions:
            try:
                conn = getattr(client, 'conn', None)
                self._versions[key] = getattr(conn, call)() if conn is not None else None
            except LibvirtClientError:
                self._versions[key] = None
        return self._versions[key]

    def feature_problems(self, names):
        """Why the features NAMES (features.FEATURES) cannot be used here: the binding, either libvirt, or the
        source's QEMU (features.QEMU_FEATURES)."""
        problems = [p for p in (compat.binding_problem(n, driver.libvirt) for n in names) if p]
        for side, client in (('the source', self.src), ('the destination', self.dst)):
            version = self._version(side, client)
            if version is not None:
                host = '%s %s' % (side, getattr(client, 'uri', ''))
                problems += [p for p in (compat.feature_problem(n, version, host) for n in names) if p]
        if any(n in compat.QEMU_FEATURES for n in names):
            host = 'the source %s' % getattr(self.src, 'uri', '')
            qemu = self._version('the source', self.src, 'getVersion')
            problems += [p for p in (compat.qemu_problem(n, qemu, host) for n in names) if p]
        return problems

    def switchover_bandwidth(self):
        """(MiB/s QEMU may count on for the switch-over, or None; why): strategy.switchover_bandwidth, the hosts
        asked only when the link speed above a cap would be used by default."""
        o = self.o
        return S.switchover_bandwidth(o.get('switchover_bandwidth_mibps'), o.get('bandwidth_mibps'),
                                      o.get('expected_bandwidth_mibps'),
                                      lambda: self.feature_problems(['switchover_bandwidth']))

    def require_features(self, names):
        """Refuse, before anything moves, a requested feature either side cannot do (never drop a flag)."""
        problems = self.feature_problems(names)
        if problems:
            raise MigrationError('cannot migrate %s: %s' % (self.name, '; '.join(problems)), self.result)

    def decide_transport(self, paused=False):
        """TLS or not for the stream, before anything changes: refuse the guest's memory in the clear unless
        the operator allowed it (allow_plaintext). PAUSED: a failed post-copy is to be resumed (the refusal
        then says where the guest is)."""
        sec = self.hosts_security
        if 'source' not in sec:
            local = security.connection_transport(getattr(self.src, 'uri', None)) == 'local'
            sec['source'] = security.host_security() if local else None
        self.transport = security.plan_transport(
            self.o.get('tls'), self.o.get('allow_plaintext'), sec.get('source'), sec.get('dest'),
            src_label='the source %s' % security.redact_uri(getattr(self.src, 'uri', '')),
            dest_label='the destination %s' % security.redact_uri(getattr(self.dst, 'uri', '')))
        self.result['transport'] = dict((k, v) for k, v in self.transport.items() if k != 'refused')
        if self.transport['refused']:
            where = ('; the guest stays paused in its failed post-copy, split between both hosts: do not destroy '
                     'either side, and run again once that is fixed to resume it' if paused else '')
            raise MigrationError('will not migrate %s: %s%s' % (self.name, self.transport['refused'], where),
                                 self.result)
        return self.transport

    # -- helpers ------------------------------------------------------------------------------
    def status(self, data):
        """The progress file (status_file), best effort: the first failure to write it is a warning."""
        error = write_status(self.o.get('status_file'), data)
        if error and 'status_file_error' not in self.result:
            self.result['status_file_error'] = error
            self.result.setdefault('warnings', []).append('%s (the move went on without it)' % error)

    def note(self, action, reason, arg=None):
        t = round(self.clock() - self.t0, 3) if self.t0 is not None else 0.0
        self.decisions.append({'t': t, 'action': action, 'argument': arg, 'reason': reason})

    def domain_on_destination(self, uuid, errors=None):
        """The domain on the destination, None when it is not there or the destination cannot say (then
        ERRORS, a list, gets why; a lost connection is dropped, so that the next look opens a new one)."""
        try:
            return self.dst.lookup_uuid(uuid)
        except LibvirtClientError as e:
            if errors is not None:
                errors.append(e.msg)
            if e.transient and hasattr(self.dst, 'reset'):
                self.dst.reset()
            return None

    # -- phases -------------------------------------------------------------------------------
    def precheck(self, dom):
        o = self.o
        report = check_domains(self.src, self.dst, [self.name], reserve_mib=o['headroom_mib'],
                               planned_mib=o.get('arriving_mib') or 0, allow_storage_copy=o['copy_storage'] != 'none', probe_storage=True)
        self.result['checks'] = report['domains'][0]['checks']
        dom_report = report['domains'][0]
        bad = [c for c in dom_report['checks'] if c['status'] == FAIL]
        if bad:
            raise MigrationError('cannot live-migrate %s: %s' % (self.name, '; '.join(c['reason'] for c in bad)),
                                 self.result)
        return report, dom_report

    def storage_plan(self, facts_disks, storage):
        shared, copy = [], []
        for d in relevant_disks(facts_disks):
            if d.get('readonly') and not d.get('source'):
                continue
            (shared if (storage.get(d['target']) or {}).get('verdict') == 'shared' else copy).append(d)
        mode = self.o['copy_storage']
        if copy and mode == 'none':
            raise MigrationError('disks %s are not proven shared and copy_storage=none'
                                 % ', '.join(d['target'] for d in copy), self.result)
        # libvirt only knows NFS, cluster filesystems and network disks as shared: file disks that
        # the marker probe proved shared need its "unsafe" override, and only those do.
        return {'shared': [d['target'] for d in shared], 'copied': [d['target'] for d in copy],
                'copy_mode': ('incremental' if mode == 'incremental' else 'all') if copy else None,
                'unsafe_override_for': [d['target'] for d in shared if d['type'] != 'network']}

    def flags_and_params(self, plan, storage):
        """(flags, params) of the migration, in the driver's words (a set of driver.MIGRATE_FLAGS, a dict of
        driver.MIGRATE_PARAMS)."""
        o = self.o
        params = {}
        flags = {'live', 'abort_on_error'}
        if o['p2p']:
            flags.add('peer2peer')
        if o['persistent']:
            flags.add('persist_dest')
        if plan['flags']['postcopy']:
            flags.add('postcopy')
        if plan['flags']['auto_converge']:
            flags.add('auto_converge')
            throttle = plan.get('auto_converge') or {}
            if throttle:
                params['auto_converge_initial'] = int(throttle['initial'])
                params['auto_converge_increment'] = int(throttle['increment'])
        if storage['unsafe_override_for']:
            flags.add('unsafe')
        if (self.transport or self.decide_transport())['tls']:
            flags.add('tls')
        if storage['copied']:
            flags.add('non_shared_inc' if storage['copy_mode'] == 'incremental' else 'non_shared_disk')
            params['migrate_disks'] = storage['copied']
        if o['bandwidth_mibps']:
            params['bandwidth'] = int(o['bandwidth_mibps'])
        if plan.get('switchover_bandwidth_mibps'):
            params['bandwidth_avail_switchover'] = int(plan['switchover_bandwidth_mibps'])
        params.update(self.postcopy.resume_params())
        if o['parallel_connections']:
            flags.add('parallel')
            params['parallel_connections'] = int(o['parallel_connections'])
        if o['compression']:
            flags.add('compressed')
            params['compression'] = o['compression']
        return flags, params

    def call_migrate(self, dom, params, flags, what):
        """libvirt's migrate call (peer-to-peer or through both connections) in a daemon thread, so that the
        caller can watch the job meanwhile: (thread, outcome), outcome getting 'ok' or 'error'."""
        outcome = {}

        def call():
            try:
                driver.migrate(dom, flags, params, dest_uri=self.o['dest_uri'],
                               dest_conn=None if self.o['p2p'] else self.dst.conn)
                outcome['ok'] = True
            except LibvirtClientError as e:
                outcome['error'] = e.detail
            except Exception as e:  # pylint: disable=broad-except
                outcome['error'] = str(e)
        thread = threading.Thread(target=call, name='%s-%s' % (what, self.name))
        thread.daemon = True
        thread.start()
        return thread, outcome

    def hang_s(self):
        """Seconds without progress after which a post-copy interrupt or resume is taken as hung."""
        return max(60.0, 12 * self.o['dead_link_s'])

    def phase(self, name, since):
        """Record how long the phase NAME took (from SINCE) in the result's phases; returns now."""
        now = self.clock()
        self.result.setdefault('phases', {})[name] = round(now - since, 3)
        return now

    def run(self, check_mode=False):
        o = self.o
        src, dst = self.src, self.dst
        mark = self.clock()
        self.result['source'] = host_facts(src)
        dom = src.lookup(self.name)
        if dom is None:
            there = dst.lookup(self.name)
            if there is not None and there.isActive():
                self.result.update(state='already_there', destination=host_facts(dst),
                                   msg='%s is not on the source and runs on the destination' % self.name)
                return self.result
            raise MigrationError('no domain named %s on %s' % (self.name, src.uri), self.result)
        if not dom.isActive():
            there = self.domain_on_destination(dom.UUIDString())
            if there is not None and there.isActive():
                self.result.update(state='already_there', destination=host_facts(dst),
                                   msg='%s runs on the destination; the source keeps an inactive definition'
                                   % self.name)
                return self.result
            raise MigrationError('%s is not running: live migration needs a running domain (a stopped one moves '
                                 'with vmmigration.libvirt.cold_migrate)' % self.name, self.result)
        if _postcopy_failed(dom):
            self.decide_transport(paused=True)
            if not check_mode:
                # (resuming a failed post-copy streams the rest of its memory: it waits for a slot too)
                await_slot(self, self.clock())
            return self.postcopy.resume(dom, check_mode)
        self.decide_transport()
        self.require_features(compat.migration_features(o))
        # QEMU measures the dirty rate while the checks and the storage proof run (no second of its own) - and
        # only when the link speed is known: without it the dirty rate decides nothing (the strategy is then
        # pre-copy, decided on progress), and the result reports the rate the migration itself measured
        rate = (o['bandwidth_mibps'] or o['expected_bandwidth_mibps'] or 0) * S.MIB
        sampling = start_dirty_rate(dom, o['dirty_rate_sample_s']) if rate else False
        if o.get('approved') is not None:
            # a drain's approved plan: checked when it was made and revalidated when the drain started
            dom_report = {'storage': dict((t, {'verdict': v}) for t, v in (o['approved'].get('storage') or {}).items())}
            self.result['checks'] = [{'check': 'approved_plan', 'status': 'pass', 'blocks': 'all',
                                      'reason': 'checked when the plan was made, revalidated when the drain started'}]
            self.result['destination'] = host_facts(dst)
        else:
            report, dom_report = self.precheck(dom)
            self.result['destination'] = report['destination'] and {
                'uri': dst.uri, 'hostname': report['destination']['hostname'], 'uuid': report['destination']['uuid']}
        facts_disks = self._facts_disks(dom)
        if o.get('approved') is not None:
            changed = reprove_shared(src, dst, relevant_disks(facts_disks), o['approved'].get('storage') or {})
            if changed:
                raise MigrationError('will not migrate %s (nothing was changed): %s' % (self.name, '; '.join(changed)),
                                     self.result)
        storage = self.storage_plan(facts_disks, dom_report['storage'])
        self.result['storage'] = storage
        info = dom.info()
        ram = info[1] * 1024
        self.started_running = driver.state_name(info[0]) == 'running'
        mark = self.phase('checks_s', mark)
        dirty = read_dirty_rate(src, dom, o['dirty_rate_sample_s'], self.clock, self.sleep) if sampling else None
        mark = self.phase('dirty_rate_wait_s', mark)
        switchover, switchover_why = self.switchover_bandwidth()
        prediction = S.predict_precopy(ram, rate, dirty, o['max_downtime_ms'],
                                       switchover_rate=switchover * S.MIB if switchover else None)
        deadline = S.completion_deadline(ram, o['timeout_per_gib_s'], o['min_timeout_s'])
        try:
            plan = S.choose_plan(prediction, o['completion'], o['allow_postcopy'], o['final_action'], deadline)
        except ValueError as e:
            raise MigrationError(str(e), self.result)
        if plan['strategy'] == 'converge':
            # (a plan expected to converge keeps QEMU's own gentle throttle as its fallback)
            plan['auto_converge'] = S.auto_converge_throttle(rate, dirty)
        plan['dirty_rate_mibps'] = round(dirty / float(S.MIB), 1) if dirty is not None else None
        plan['ram_mib'] = ram // S.MIB
        plan['deadline_s'] = round(deadline, 1)
        plan['max_downtime_ms'] = o['max_downtime_ms']
        plan['switchover_bandwidth_mibps'] = switchover
        plan['switchover_bandwidth_why'] = switchover_why
        if prediction.get('converges') and prediction.get('total_s') is not None:
            plan['predicted_total_s'] = prediction['total_s']
            plan['predicted_downtime_ms'] = prediction['downtime_ms']
        elif plan['strategy'] in ('postcopy', 'hybrid') and rate:
            plan['predicted_total_s'] = S.predict_postcopy(ram, rate)['total_s']
        if plan['flags']['postcopy']:
            self.result['warnings'] = ['post-copy is allowed but cannot be recovered if its link fails: %s' % p
                                       for p in self.feature_problems(['postcopy_interrupt', 'postcopy_resume'])]
        self.result['plan'] = plan
        self.result['changed'] = True
        if check_mode:
            self.result['state'] = 'planned'
            return self.result
        await_slot(self, self.phase('planning_s', mark))
        return self.monitor.watch_migration(dom, plan, storage, ram, deadline)

    def _facts_disks(self, dom):
        from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.domain_xml import parse_domain  # pylint: disable=import-outside-toplevel
        return parse_domain(driver.definition(dom))['disks']
