# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Runs one live migration: plan, start, poll the job at several Hz, apply the _strategy decisions,
commit (destination confirmed running before the source definition goes) or roll back (the guest
keeps running on the source, nothing left on the destination). The only place that calls libvirt's
migrate, abort and post-copy switch.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

import json
import os
import threading
import time

from urllib.parse import urlparse

from ansible_collections.vmmigration.libvirt.plugins.module_utils import _compat as compat
from ansible_collections.vmmigration.libvirt.plugins.module_utils import _strategy as S
from ansible_collections.vmmigration.libvirt.plugins.module_utils import _security as security
from ansible_collections.vmmigration.libvirt.plugins.module_utils._checks import FAIL, relevant_disks
from ansible_collections.vmmigration.libvirt.plugins.module_utils import _driver as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils._client import (
    UNKNOWN_SAID,
    LibvirtClientError,
    domain_state,
    libvirtd_address as peer_address,
    read_back,
    reachable,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils._precheck import check_domains
from ansible_collections.vmmigration.libvirt.plugins.module_utils._storage import reprove_shared
from ansible_collections.vmmigration.libvirt.plugins.module_utils._wait import wait_until

POSITIVE = ('bandwidth_mibps', 'postcopy_bandwidth_mibps', 'expected_bandwidth_mibps', 'max_downtime_ms',
            'downtime_steps', 'parallel_connections', 'timeout_per_gib_s', 'min_timeout_s', 'hard_timeout_s',
            'stall_iterations', 'dead_link_s', 'poll_interval_s')
NOT_NEGATIVE = ('downtime_step_delay_s', 'downtime_step_delay_s_per_gib', 'dirty_rate_sample_s', 'headroom_mib',
                'postcopy_recovery_attempts')


# The options the migrate_vm role passes through from migrate_vm_options (its argument spec's sub-options
# are generated from these by docs/make_role_options.py; a unit test checks its tasks pass the same).
ROLE_MIGRATE_VM_OPTIONS = ('migration_uri', 'bandwidth_mibps', 'postcopy_bandwidth_mibps', 'expected_bandwidth_mibps',
                           'max_downtime_ms', 'parallel_connections', 'compression', 'tls', 'allow_plaintext',
                           'copy_storage', 'completion', 'allow_postcopy', 'final_action', 'hard_timeout_s',
                           'tuning', 'headroom_mib', 'status_file')
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


class MigrationError(LibvirtClientError):
    """A migration that did not happen (or failed and was rolled back); RESULT says what was done."""

    def __init__(self, msg, result=None):
        super().__init__(msg)
        self.result = result or {}


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


def libvirtd_address(src_uri, dest_uri):
    """(host, port) of the destination's libvirtd when the source libvirtd is local (so a TCP probe from
    here says what the source libvirtd would see); None when unknown or not meaningful."""
    return None if urlparse(src_uri or '').hostname else peer_address(dest_uri)


def _host(client):
    facts = {'uri': client.uri}
    try:
        facts['hostname'] = client.conn.getHostname()
        facts['uuid'] = client.host_uuid()
    except LibvirtClientError:
        pass
    return facts


class LiveMigration:
    """One live migration of one domain; construct, then call run(check_mode)."""

    def __init__(self, src, dst, name, opts, clock=time.monotonic, sleep=time.sleep, hosts_security=None):
        self.src, self.dst, self.name, self.o = src, dst, name, flat_options(opts)
        # {'source': .., 'dest': ..}: each host's _security.host_security() state, None when unknown; the
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

    def _libvirt_version(self, side, client):
        """SIDE's libvirt version, read once (later checks run while a link may be dead); None when it cannot
        be read - then libvirt itself refuses what it cannot do."""
        if side not in self._versions:
            try:
                conn = getattr(client, 'conn', None)
                self._versions[side] = conn.getLibVersion() if conn is not None else None
            except LibvirtClientError:
                self._versions[side] = None
        return self._versions[side]

    def feature_problems(self, names):
        """Why the features NAMES (_compat.FEATURES) cannot be used here: the binding, or either libvirt."""
        problems = [p for p in (compat.binding_problem(n, driver.libvirt) for n in names) if p]
        for side, client in (('the source', self.src), ('the destination', self.dst)):
            version = self._libvirt_version(side, client)
            if version is not None:
                host = '%s %s' % (side, getattr(client, 'uri', ''))
                problems += [p for p in (compat.feature_problem(n, version, host) for n in names) if p]
        return problems

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

    def _domain_on_destination(self, uuid, errors=None):
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
                               allow_storage_copy=o['copy_storage'] != 'none', probe_storage=True)
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
        params.update(self.resume_params())
        if o['parallel_connections']:
            flags.add('parallel')
            params['parallel_connections'] = int(o['parallel_connections'])
        if o['compression']:
            flags.add('compressed')
            params['compression'] = o['compression']
        return flags, params

    def _call_migrate(self, dom, params, flags, what):
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

    def _resume_once(self, dom, params, flags):
        """One resume call, watched: None when it finished, else the libvirt error or why it was given up
        (no byte moved for hang_s seconds: the destination QEMU can block for good - its main loop waits for
        a page that is still on the source while libvirt asks it to recover)."""
        thread, outcome = self._call_migrate(dom, params, flags, 'resume')
        seen = {'last': None, 'moved_at': self.clock()}

        def step():
            if not thread.is_alive():
                return 'ended'
            try:
                processed = driver.job_stats(dom).get('data_processed')
            except LibvirtClientError:
                processed = None
            if processed is not None and processed != seen['last']:
                seen['last'], seen['moved_at'] = processed, self.clock()
            return 'hung' if self.clock() - seen['moved_at'] > self.hang_s() else None
        how = wait_until(step, self.resume_limit_s(), self.o['poll_interval_s'], self.clock, thread.join)
        if how == 'hung':
            return ('hung', 'the resume moved no data for %d s: the destination QEMU looks blocked (a thread '
                    'holding its main lock waits for a page that is still on the source, so it cannot '
                    'take the recovery request)' % self.hang_s())
        if how is None:
            return ('hung', 'the resume was still running after %d s: no longer waiting for it (libvirt keeps '
                    'the job)' % self.resume_limit_s())
        return None if 'ok' in outcome else ('error', outcome.get('error', 'resume failed'))

    def resume_limit_s(self):
        """Seconds one post-copy resume call is watched at most (it normally ends long before)."""
        return max(self.o['hard_timeout_s'] or 0, 1800) + self.hang_s()

    def resume_params(self):
        """The parameters a post-copy resume needs again: the migration address and post-copy cap."""
        o, params = self.o, {}
        if o['migration_uri']:
            params['uri'] = o['migration_uri']
        if o.get('postcopy_bandwidth_mibps'):
            params['bandwidth_postcopy'] = int(o['postcopy_bandwidth_mibps'])
        return params

    def phase(self, name, since):
        """Record how long the phase NAME took (from SINCE) in the result's phases; returns now."""
        now = self.clock()
        self.result.setdefault('phases', {})[name] = round(now - since, 3)
        return now

    def run(self, check_mode=False):
        o = self.o
        src, dst = self.src, self.dst
        mark = self.clock()
        self.result['source'] = _host(src)
        dom = src.lookup(self.name)
        if dom is None:
            there = dst.lookup(self.name)
            if there is not None and there.isActive():
                self.result.update(state='already_there', destination=_host(dst),
                                   msg='%s is not on the source and runs on the destination' % self.name)
                return self.result
            raise MigrationError('no domain named %s on %s' % (self.name, src.uri), self.result)
        if not dom.isActive():
            there = self._domain_on_destination(dom.UUIDString())
            if there is not None and there.isActive():
                self.result.update(state='already_there', destination=_host(dst),
                                   msg='%s runs on the destination; the source keeps an inactive definition'
                                   % self.name)
                return self.result
            raise MigrationError('%s is not running: live migration needs a running domain (a stopped one moves '
                                 'with vmmigration.libvirt.cold_migrate)' % self.name, self.result)
        if _postcopy_failed(dom):
            self.decide_transport(paused=True)
            return self.resume(dom, check_mode)
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
            self.result['destination'] = _host(dst)
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
        prediction = S.predict_precopy(ram, rate, dirty, o['max_downtime_ms'])
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
        self.phase('planning_s', mark)
        return self.watch_migration(dom, plan, storage, ram, deadline)

    def resume(self, dom, check_mode):
        """A post-copy migration that failed earlier (the source guest is paused, post-copy failed): resume
        it to the same destination; the only way forward, since both hosts hold part of the guest."""
        self.require_features(['postcopy_resume'])
        self.result.update(changed=True, destination=_host(self.dst),
                           plan={'strategy': 'postcopy_resume',
                                 'reason': 'an earlier post-copy migration of this guest failed; resuming it'})
        if check_mode:
            self.result['state'] = 'planned'
            return self.result
        self.t0 = self.clock()
        state = {'postcopy': True, 'paused': False}
        self.note('start', 'resuming the failed post-copy migration', 'postcopy_resume')
        recovered, how = self._recover_postcopy(dom)
        self.result.update(decisions=self.decisions, total_time_s=round(self.clock() - self.t0, 3),
                           postcopy=True, paused=False)
        if not recovered:
            self.result['state'] = 'postcopy_failed'
            raise MigrationError('resuming the post-copy migration of %s failed; %s' % (self.name, how), self.result)
        self.commit(dom, dom.UUIDString(), state, {})
        self.result['state'] = 'migrated_after_recovery'
        return self.result

    def _facts_disks(self, dom):
        from ansible_collections.vmmigration.libvirt.plugins.module_utils._domain import parse_domain  # pylint: disable=import-outside-toplevel
        return parse_domain(driver.definition(dom))['disks']

    def watch_migration(self, dom, plan, storage, ram, deadline):
        o = self.o
        flags, params = self.flags_and_params(plan, storage)
        ramp = S.downtime_steps(o['max_downtime_ms'], o['downtime_steps'],
                                o['downtime_step_delay_s'] if o['downtime_step_delay_s'] is not None
                                else max(0.5, o['downtime_step_delay_s_per_gib'] * float(ram) / S.GIB),
                                start_ms=min(o['max_downtime_ms'], 50))
        cfg = {'plan': plan, 'ramp': ramp, 'deadline_s': deadline, 'hard_timeout_s': o['hard_timeout_s'],
               'stall_iterations': o['stall_iterations'], 'stall_window_s': o['dead_link_s'],
               'start_grace_s': self.hang_s()}
        state = {'elapsed_s': 0.0, 'iteration': 0, 'history': self.history, 'downtime_ms': 0,
                 'postcopy': False, 'final_taken': None, 'paused': False, 'postcopy_interrupted': False}
        uuid = dom.UUIDString()
        if self.src.conn is not None and driver.events_running():
            try:
                driver.on_job_completed(self.src.conn, dom, self.events.append)
            except LibvirtClientError:
                pass
        self.t0 = self.clock()
        self.note('start', 'flags %s' % self._flag_names(flags), plan['strategy'])
        self.status({'domain': self.name, 'phase': 'starting', 'elapsed_s': 0.0, 'percent': 0,
                     'decisions': self.decisions[-5:]})
        thread, outcome = self._call_migrate(dom, params, flags, 'migrate')
        last = {}
        # no wait without an end: the strategy aborts (or finishes) by the completion deadline or the hard
        # timeout; libvirt then gets twice hang_s to end the job before this stops waiting for it
        limit = self.wait_limit_s(deadline)

        def step():
            """One look at the job: True once the migration call returned (or was given up)."""
            if not thread.is_alive():
                return True
            state['elapsed_s'] = self.clock() - self.t0
            try:
                stats = driver.job_stats(dom)
            except LibvirtClientError:
                stats = {}
            if driver.job_running(stats):
                last.clear()
                last.update(stats)
                state['iteration'] = stats.get('memory_iteration')
                self.history.append((round(state['elapsed_s'], 3), stats.get('memory_iteration'),
                                     stats.get('memory_remaining', stats.get('data_remaining', 0)),
                                     stats.get('data_processed')))
                action, arg, reason = S.decide(state, cfg)
                self.apply(dom, action, arg, reason, state)
            self.status({
                'domain': self.name, 'phase': 'postcopy' if state['postcopy'] else 'migrating',
                'elapsed_s': round(state['elapsed_s'], 2), 'percent': S.progress_percent(last),
                'iteration': last.get('memory_iteration'), 'data_remaining': last.get('data_remaining'),
                'data_processed': last.get('data_processed'), 'data_total': last.get('data_total'),
                'memory_bps': last.get('memory_bps'), 'downtime_ms': state['downtime_ms'],
                'decisions': self.decisions[-5:]})
            if state['postcopy_interrupted'] and self.clock() - state['interrupted_at'] > self.hang_s():
                outcome['error'] = ('libvirt did not end the post-copy migration %d s after it was interrupted '
                                    '(its migration call still waits for the destination)' % self.hang_s())
                return True
            return False
        # thread.join is the sleep: the wait ends as soon as the migration call returns
        if not wait_until(step, limit, o['poll_interval_s'], self.clock, thread.join):
            self.give_up_waiting(dom, state, limit, outcome)
        wall = self.clock() - self.t0
        self.result.setdefault('phases', {})['migration_s'] = round(wall, 3)
        self.result['decisions'] = self.decisions
        self.result['total_time_s'] = round(wall, 3)
        self.result['postcopy'] = state['postcopy']
        self.result['paused'] = state['paused']
        if 'ok' not in outcome:
            error = outcome.get('error') or 'migration failed'
            if state.get('abort_reason'):
                error = 'aborted by the engine: %s (libvirt: %s)' % (state['abort_reason'], error)
            return self.rollback(dom, uuid, error, state)
        return self.commit(dom, uuid, state, last)

    def wait_limit_s(self, deadline):
        """Seconds after which the monitor stops waiting for the migration call, whatever happens."""
        return max(deadline, self.o['hard_timeout_s'] or 0) + 2 * self.hang_s()

    def give_up_waiting(self, dom, state, limit, outcome):
        """The migration call outlived every bound: stop waiting. A post-copy is never aborted (the guest runs
        on the destination, with pages still on the source): that is reported as it is; a pre-copy is aborted
        (the source still holds the whole guest) and rolled back by the caller."""
        self.result.update(decisions=self.decisions, total_time_s=round(self.clock() - self.t0, 3),
                           postcopy=state['postcopy'], paused=state['paused'])
        if state['postcopy']:
            self.note('gave_up', 'post-copy still running after %d s: no longer waiting; never aborted' % limit)
            self.result['state'] = 'postcopy_running'
            raise MigrationError(
                'the post-copy migration of %s was still running after %d s: it is not aborted (the guest runs on '
                'the destination and still fetches pages from the source); do not destroy either side; libvirt '
                'finishes it - watch it with vmmigration.libvirt.migration_job_info' % (self.name, limit), self.result)
        try:
            driver.abort_job(dom)
        except LibvirtClientError as e:
            self.note('abort', 'could not abort the job: %s' % e.detail)
        outcome['error'] = ('the migration job did not end within %d s (its completion deadline and the time '
                            'libvirt is given to end it): aborted' % limit)

    def apply(self, dom, action, arg, reason, state):
        if action == 'wait':
            return
        try:
            if action == 'set_downtime':
                driver.set_max_downtime(dom, arg)
                state['downtime_ms'] = int(arg)
            elif action == 'postcopy':
                state['postcopy'] = True
                state['final_taken'] = 'postcopy'
                driver.start_postcopy(dom)
            elif action == 'pause':
                state['final_taken'] = 'pause'
                dom.suspend()
                state['paused'] = True
            elif action == 'abort':
                state['final_taken'] = 'abort'
                state['abort_reason'] = reason
                driver.abort_job(dom)
            elif action == 'postcopy_pause':
                state['postcopy_interrupted'] = True
                state['interrupted_at'] = self.clock()
                problems = self.feature_problems(['postcopy_interrupt'])
                if problems:
                    reason += ' - but %s: waiting for it' % '; '.join(problems)
                else:
                    driver.abort_job(dom, postcopy=True)
            self.note(action, reason, arg)
        except LibvirtClientError as e:
            # a switch racing the end of the migration is harmless; anything else is reported
            self.note(action, '%s (libvirt: %s)' % (reason, e.detail), arg)

    def completed_stats(self, dom):
        """The completed job's statistics: from the job-completed event, else libvirt's record (1 s at most)."""
        def stats():
            if self.events:
                return dict(self.events[-1])
            try:
                found = driver.job_stats(dom, completed=True)
            except LibvirtClientError:
                return None
            return found if driver.job_kind(found) == 'completed' else None
        return wait_until(stats, 1.0, 0.05, self.clock, self.sleep) or {}

    def commit(self, dom, uuid, state, last):
        """Destination confirmed running before the source definition is removed."""
        o = self.o
        mark = self.clock()
        stats = self.completed_stats(dom)
        seen = {'dom': None, 'errors': []}

        def up():
            del seen['errors'][:]
            seen['dom'] = self._domain_on_destination(uuid, seen['errors'])
            seen['state'] = (domain_state(seen['dom']) if seen['dom'] is not None
                             else 'unknown' if seen['errors'] else 'gone')
            return seen['state'] in ('running', 'paused')
        wait_until(up, 15, 0.1, self.clock, self.sleep)
        there, dst_state = seen['dom'], seen['state']
        resume_error = []
        if dst_state == 'paused' and (state['paused'] or state.get('final_taken') == 'pause'):
            # (paused to finish - also when the pause took effect and its reply was lost)
            there, dst_state = self._resume_on_destination(there, uuid, resume_error)
        self.result['stats'] = S.summarize(stats or last)
        self._figures(stats or last)
        if dst_state == 'unknown':
            self.result['state'] = 'destination_unknown'
            raise MigrationError(
                '%s migrated (the source ended the job) but the destination cannot be reached to confirm that it '
                'runs there (%s)%s; the source definition was kept - do not start it there' % (
                    self.name, '; '.join(seen['errors']) or 'its state cannot be read',
                    '; it was paused to finish: resume it on the destination (virsh resume %s) once that answers'
                    % self.name if state['paused'] else ''), self.result)
        if dst_state != 'running' and not (dst_state == 'paused' and not self.started_running):
            # (a guest its owner had paused before the move is rightly paused there)
            self.result['state'] = 'destination_not_running'
            raise MigrationError('%s migrated but is %s on the destination%s; the source definition was kept'
                                 % (self.name, dst_state, ' (it was paused to finish and could not be resumed: %s - '
                                    'resume it there now: virsh resume %s)' % (resume_error[-1], self.name)
                                    if resume_error else ''), self.result)
        self.note('committed', 'destination runs %s' % self.name)
        # wall-clock time the guest was confirmed running on the destination (for the time to network
        # convergence measured elsewhere, e.g. by ip_reachable's since)
        self.result['running_on_destination_at'] = round(time.time(), 3)
        self.result['state'] = 'migrated'
        self.phase('commit_s', mark)
        if o['undefine_source']:
            try:
                if dom.isPersistent() and not dom.isActive():
                    driver.undefine(dom, nvram='keep')
                    self.note('undefine_source', 'source definition removed after the commit')
            except LibvirtClientError as e:
                # past the commit point nothing is rolled back: say where the guest is and what is left
                self.note('undefine_source', 'could not remove the source definition: %s' % e.detail)
                self.result['source_cleanup_failed'] = True
                raise MigrationError(
                    'moved %s: it runs on the destination %s; source cleanup failed: could not remove its inactive '
                    'definition on the source (%s) - remove it there (virsh undefine %s) before anything starts '
                    'it again' % (self.name, self.dst.uri, e.detail, self.name), self.result)
        self.status({'domain': self.name, 'phase': 'done', 'result': self._short()})
        return self.result

    def _resume_retrying(self, client, dom, find, errors):
        """Resume DOM (paused to finish a move); a failed call, a dropped connection included, is tried again
        for 10 s (FIND looks the domain up again on a new connection). Returns (resumed?, domain); ERRORS
        gets why it failed."""
        seen = {'dom': dom}

        def resumed():
            if seen['dom'] is None:
                seen['dom'] = find()
                if seen['dom'] is None:
                    return False
            try:
                seen['dom'].resume()
                return True
            except LibvirtClientError as e:
                errors.append(e.detail)
                if domain_state(seen['dom']) == 'running':
                    return True
                if e.transient:
                    client.reset()
                    seen['dom'] = None
                return False
        ok = wait_until(resumed, 10, 0.5, self.clock, self.sleep)
        return bool(ok), seen['dom'] or dom

    def _resume_on_destination(self, there, uuid, errors):
        """Resume on the destination a guest paused to finish its move: (domain, its state)."""
        ok, there = self._resume_retrying(self.dst, there, lambda: self._domain_on_destination(uuid, errors), errors)
        self.note('resume', 'the guest was paused to finish: resumed on the destination' if ok else
                  'could not resume the guest on the destination: %s' % errors[-1])
        return there, domain_state(there)

    def _find_on_source(self, errors):
        try:
            return self.src.lookup(self.name)
        except LibvirtClientError as e:
            errors.append(e.msg)
            return None

    def rollback(self, dom, uuid, error, state):
        """The guest keeps running on the source; nothing is left on the destination."""
        self.note('failed', error)
        self.result['stats'] = S.summarize(self.completed_stats(dom) if not state['postcopy'] else {})
        if state['postcopy']:
            # Never roll back a post-copy: the destination runs the guest and holds memory the source lacks. It
            # may also have finished, its reply lost: read both sides back first.
            _there, dst_state = self._read_back(self.dst, uuid, [])
            again, src_state = self._read_back(self.src, uuid, [])
            if dst_state == 'running' and src_state in ('shutoff', 'gone', 'unknown'):
                return self._moved_anyway(again or dom, uuid, error, src_state, state)
            self.result['state'] = 'postcopy_failed'
            recovered, how = self._recover_postcopy(dom)
            if recovered:
                self.result['recovered_from'] = error
                self.result['total_time_s'] = round(self.clock() - self.t0, 3)
                self.commit(dom, uuid, state, {})
                self.result['state'] = 'migrated_after_recovery'
                return self.result
            raise MigrationError('post-copy migration of %s failed (%s); %s' % (self.name, error, how), self.result)
        # Nothing is resumed here before the destination has been asked: libvirt may have finished the job
        # although our call failed (its reply lost), and the destination may then run the guest on the same
        # disks. Both sides are read back, each on a new connection if its own was lost.
        dst_errors, src_errors = [], []
        there, dst_state = self._read_back(self.dst, uuid, dst_errors)
        again, src_state = self._read_back(self.src, uuid, src_errors)
        dom = again or dom
        if dst_state == 'running' or (dst_state == 'paused' and src_state in ('shutoff', 'gone')):
            # the job finished in libvirt although our call failed: the guest is on the destination - a move,
            # not a rollback
            return self._moved_anyway(dom, uuid, error, src_state, state)
        if dst_state == 'unknown' and src_state != 'running' or src_state == 'unknown' and dst_state != 'gone':
            return self._unknown(error, src_state, dst_state, src_errors + dst_errors)
        if src_state == 'paused':
            errors = []
            ok, dom = self._resume_retrying(self.src, dom, lambda: self._find_on_source(errors), errors)
            self.note('resume', 'source guest resumed after the failed migration (the destination does not run '
                      'it: %s)' % dst_state if ok else 'could not resume the source guest: %s' % errors[-1])
            src_state = domain_state(dom)
        cleaned = None
        if dst_state == 'unknown':
            cleaned = ('could not check the destination for a half-migrated copy (%s): libvirt removes an incoming '
                       'guest whose migration failed; check with virsh list --all there' % dst_errors[-1])
            self.note('cleanup', cleaned)
        if there is not None and src_state == 'running':
            try:
                if there.isActive():
                    there.destroy()
                if there.isPersistent():
                    there.undefine()
                cleaned = 'removed the half-migrated copy from the destination'
            except LibvirtClientError as e:
                cleaned = 'could not remove the half-migrated copy from the destination: %s' % e.detail
            self.note('cleanup', cleaned)
        self.result['state'] = 'rolled_back' if src_state == 'running' else 'source_%s' % src_state
        self.result['changed'] = src_state != 'running'
        where = ('its state on the source cannot be read (the connection to the source is lost): check it there'
                 if src_state == 'unknown' else 'the guest is %s on the source' % src_state)
        raise MigrationError('live migration of %s failed: %s; %s%s' % (
            self.name, error, where, '' if not cleaned else '; ' + cleaned), self.result)

    def _read_back(self, client, uuid, errors):
        return read_back(client, uuid, errors, self.clock, self.sleep)

    def _moved_anyway(self, dom, uuid, error, src_state, state):
        """The migration call failed, but the destination has the guest and the source QEMU does not run it: the
        move is committed as usual (a source libvirt left paused after a lost reply is stopped first: the
        destination was confirmed to run the guest)."""
        self.note('committed', 'the destination has %s although the migration call failed (%s)' % (self.name, error))
        self.result['recovered_from'] = error
        if src_state == 'paused':
            try:
                dom.destroy()
                self.note('cleanup', 'stopped the paused source QEMU: the destination runs the guest')
            except LibvirtClientError as e:
                self._moved_but_source_left(error, 'the source still holds a paused copy that could not be stopped '
                                            '(%s) - destroy it there (virsh destroy %s, then virsh undefine %s); never '
                                            'resume it' % (e.detail, self.name, self.name))
        if src_state == 'unknown':
            self._moved_but_source_left(error, 'its state on the source cannot be read - check there that it is not '
                                        'running and remove its inactive definition (virsh undefine %s) before '
                                        'anything starts it again' % self.name)
        # (a destination left paused is resumed when the guest ran before the move - paused to finish, or the job
        # ended paused; a guest its owner had paused stays paused)
        self.commit(dom, uuid, dict(state, paused=state['paused'] or self.started_running), {})
        return self.result

    def _moved_but_source_left(self, error, left):
        """The guest runs on the destination although the migration call failed; LEFT says what the source keeps."""
        self.result.update(state='migrated', changed=True, source_cleanup_failed=True,
                           running_on_destination_at=round(time.time(), 3))
        raise MigrationError('moved %s: it runs on the destination %s (libvirt finished the job although our call '
                             'failed: %s); source cleanup failed: %s' % (self.name, self.dst.uri, error, left),
                             self.result)

    def _unknown(self, error, src_state, dst_state, errors):
        """Where the guest runs cannot be confirmed: nothing is resumed or removed, and the operator is told
        what to check."""
        self.note('unknown', 'source %s, destination %s: nothing resumed' % (src_state, dst_state))
        self.result.update(state='unknown', changed=True, source_state=src_state, destination_state=dst_state)
        raise MigrationError(
            'live migration of %s failed (%s) and where the guest runs cannot be confirmed: on the source it is %s, '
            'on the destination %s%s. Nothing was resumed or removed: %s until both hosts have been checked '
            '(virsh domstate %s on each; a paused copy whose peer runs the guest is stale - destroy it, never '
            'resume it)' % (self.name, error, src_state, dst_state,
                            ' (%s)' % errors[-1] if errors else '', UNKNOWN_SAID, self.name), self.result)

    def _recover_postcopy(self, dom):
        """Resume a failed post-copy migration (libvirt 8.5+), retrying while the link comes back: waits of
        2, 4, 8, then 15 s between attempts. Returns (recovered, what to tell the operator)."""
        problems = self.feature_problems(['postcopy_resume'])
        if problems:
            return False, ('%s: the guest state is split between the hosts; do not destroy either side'
                           % '; '.join(problems))
        flags = {'live', 'postcopy', 'postcopy_resume', 'persist_dest'}
        if (self.transport or {}).get('tls'):
            flags.add('tls')    # the resumed stream is encrypted like the move it resumes
        if self.o['p2p']:
            flags.add('peer2peer')
        params = self.resume_params()
        attempts = self.o['postcopy_recovery_attempts']
        # a connection to a destination behind a dead link hangs in TCP connect for minutes: probe first
        address = libvirtd_address(getattr(self.src, 'uri', None), self.o['dest_uri']) if self.o['p2p'] else None
        for attempt in range(attempts):
            self.status({
                'domain': self.name, 'phase': 'postcopy_recovery', 'attempt': attempt + 1, 'attempts': attempts,
                'elapsed_s': round(self.clock() - self.t0, 2), 'decisions': self.decisions[-5:]})
            if address and not reachable(address):
                self.note('postcopy_resume', 'post-copy recovery %d of %d: the destination libvirtd (%s port %d) does '
                          'not answer yet' % ((attempt + 1, attempts) + address))
            else:
                failure = self._resume_once(dom, params, flags)
                if failure is None:
                    self.note('postcopy_resume', 'post-copy recovery %d succeeded' % (attempt + 1))
                    return True, 'recovered: the guest runs on the destination'
                self.note('postcopy_resume', 'post-copy recovery %d of %d failed: %s' % (attempt + 1, attempts, failure[1]))
                if failure[0] == 'hung':
                    return False, ('recovery hung: %s. Do not destroy either side while the destination may still '
                                   'get its pages; libvirt keeps the resume job open' % failure[1])
            if attempt + 1 < attempts:
                self.sleep(min(15, 2 ** (attempt + 1)))
        return False, ('recovery failed after %d attempts: the guest is paused with its memory split between '
                       'both hosts; do not destroy either side; restore the network and run virsh migrate '
                       '--postcopy --postcopy-resume (or this module again)' % attempts)

    def _figures(self, stats):
        self.result['downtime_ms'] = stats.get('downtime')
        self.result['bytes_transferred'] = stats.get('data_processed')
        self.result['iterations'] = stats.get('memory_iteration')
        self.result['postcopy_requests'] = stats.get('memory_postcopy_requests')
        bps = stats.get('memory_bps')
        self.result['bandwidth_mibps'] = round(bps / float(S.MIB), 1) if bps else None
        self.result['dirty_rate_mibps'] = (self.result.get('plan') or {}).get('dirty_rate_mibps')
        pages, page = stats.get('memory_dirty_rate'), stats.get('memory_page_size') or 4096
        if self.result['dirty_rate_mibps'] is None and pages is not None:
            # not sampled before the move (link speed unknown): the rate the migration measured
            self.result['dirty_rate_mibps'] = round(pages * page / float(S.MIB), 1)

    def _short(self):
        return {k: self.result.get(k) for k in ('total_time_s', 'downtime_ms', 'bytes_transferred', 'iterations',
                                                'postcopy', 'paused')}

    @staticmethod
    def _flag_names(flags):
        return ','.join(sorted(flags))
