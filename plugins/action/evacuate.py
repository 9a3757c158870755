# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""evacuate with background: the whole drain in one task - started in the background on the drained host (it
goes on if the controller is lost), its progress printed here as it changes, its result read back when it ends,
and its report and calibration written on the controller. Without background the module runs as any module does
(check mode included: a plan, nothing in the background)."""

import errno
import fcntl
import json
import os
import time
import uuid

from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.vmmigration.libvirt.plugins.action.controller_files import write_atomic
from ansible_collections.vmmigration.libvirt.plugins.action.evacuation_status import follow
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import calibration as CAL
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import report as REPORT
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import rolling as ROLLING
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import wait_until
from ansible_collections.vmmigration.libvirt.plugins.plugin_utils.renamed import renamed_problems

MODULE = 'vmmigration.libvirt.evacuate'
STATUS = 'vmmigration.libvirt.evacuation_status'
ASYNC_STATUS = 'ansible.legacy.async_status'

display = Display()

# what async_status adds to the module's own result (the module's own stdout and stderr stay: they say why a module
# that crashed did)
ASYNC_KEYS = ('ansible_job_id', 'finished', 'started', 'results_file', 'erased')
# a host that does not answer a read is asked again this many times (2, 4, 6 s apart) before the task gives up
# following - the drain goes on there
READ_RETRIES = 3
# async_wrapper may say "started" before its job file exists: "could not find job" means "not yet" this long
JOB_FILE_GRACE_S = 30
# a drain whose status says its process is gone, while its job never ends, is given up after this long
DEAD_GRACE_S = 60


class FollowLost(Exception):
    """Following the drain ended without its result: the drain may go on on the host."""


def async_bound(args):
    """Seconds the background drain may run at most: its own bound (timeout_s) + the longest move (a live move's
    per_vm_timeout_s, or a cold move's shutdown and copy deadlines) + 15 min."""
    timeout = float(args.get('timeout_s') or 3600)
    per_vm = float(args.get('per_vm_timeout_s') or 600)
    return int(timeout + max(2 * per_vm, 1920) + 900)


def report_files(result):
    """The drain's report as the controller keeps it: (name, bytes) of report.json, report.txt, timeline.html - the
    timeline drawn here, on the controller, from the result's data (the module returns no HTML); a result without
    moves (a drain that failed before any) has an empty one."""
    report = result.get('report') or {}
    plain = dict((k, v) for k, v in result.items() if k != 'invocation')
    html = REPORT.timeline_html(result.get('results') or [], report.get('title') or 'Evacuation') \
        if result.get('report') else ''
    return [('report.json', json.dumps(plain, indent=4, sort_keys=True, ensure_ascii=False, default=to_text) + '\n'),
            ('report.txt', '\n'.join(report.get('table') or []) + '\n'),
            ('timeline.html', html)]


def save_report(directory, result):
    """The report files in DIRECTORY (made 0700 when missing), each 0600 and replaced atomically - all three, so that
    no earlier drain's table or timeline stays beside this one's result; their paths."""
    os.makedirs(directory, 0o700, exist_ok=True)
    paths = []
    for name, text in report_files(result):
        path = os.path.join(directory, name)
        write_atomic(path, to_bytes(text), 0o600)
        paths.append(path)
    return paths


def read_calibration(path):
    """PATH's calibration; {} when there is none yet. One that cannot be read or is not a calibration is refused,
    never overwritten: its history is what the predictions learn from."""
    try:
        with open(path) as f:
            calibration = json.load(f)
    except (IOError, OSError) as e:
        if e.errno == errno.ENOENT:
            return {}
        raise ValueError('cannot read the calibration %s: %s' % (path, e))
    except ValueError as e:
        raise ValueError('the calibration %s is not JSON (%s): move it aside' % (path, e))
    if not isinstance(calibration, dict):
        raise ValueError('the calibration %s is not a calibration (a JSON object): move it aside' % path)
    return calibration


def save_calibration(path, result, role_wall_s, default_rate, now=None):
    """PATH's calibration with this drain's samples added - read, updated and replaced under a lock, so that hosts
    draining side by side (one controller, several forks) all add theirs."""
    os.makedirs(os.path.dirname(path) or '.', 0o700, exist_ok=True)
    # (the lock file is its owner's only, like the calibration; never through a link someone else put there)
    with os.fdopen(os.open(path + '.lock', os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600), 'r+') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            updated = CAL.update(ROLLING.plain(read_calibration(path)), ROLLING.plain(result),
                                 role_wall_s=role_wall_s, default_rate=default_rate,
                                 now=round(now if now is not None else time.time(), 3))
            write_atomic(path, to_bytes(json.dumps(updated, indent=4, sort_keys=True) + '\n'), 0o600)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path


class ActionModule(ActionBase):
    """Run the evacuate module, or with background the whole drain in one task."""

    # (without background the module runs as any module does, with the task's async and poll too)
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        problems = renamed_problems('evacuate', self._task.args)
        if problems:
            return dict(result, failed=True, msg='; '.join(problems) + ' (nothing ran)')
        args = dict(self._task.args)
        background = args.pop('background', None)
        if background is None or self._task.check_mode:
            wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars,
                                               wrap_async=wrap_async))
            return result
        if self._task.async_val:
            return dict(result, failed=True, msg='background runs the drain in the background itself: leave the '
                        'task\'s async and poll out')
        if not isinstance(background, dict):
            return dict(result, failed=True, msg='background: give a dict (async_s, follow_interval_s, report_dir, '
                        'calibration_file, started_at, default_rate_mibps) - got %s' % type(background).__name__)
        try:
            opts = self._background_options(background, args)
        except (TypeError, ValueError) as e:
            return dict(result, failed=True, msg='background: %s' % to_text(e))
        if not args.get('status_file'):
            return dict(result, failed=True, msg='background needs status_file (the drain\'s progress is read there)')
        host = (task_vars or {}).get('inventory_hostname', '')
        t0 = time.monotonic()

        def execute(**kw):
            res = self._execute_module(**kw)
            display.vvv('[%s] evacuate background: %s%s -> %s at %.2f s' % (
                host, kw['module_name'], ' (async)' if kw.get('wrap_async') else '',
                res.get('state') or res.get('finished'), time.monotonic() - t0))
            return res

        def read(**kw):
            """A read on the host; one the host does not answer is asked again, then following gives up."""
            for attempt in range(READ_RETRIES + 1):
                try:
                    return execute(task_vars=task_vars, **kw)
                except AnsibleConnectionFailure as e:
                    if attempt == READ_RETRIES:
                        raise FollowLost('%s does not answer (%s)' % (host, to_text(e)))
                    time.sleep(2 * (attempt + 1))
            raise FollowLost('unreachable')  # (never here)

        # (this drain's status says so: the status file may still hold an earlier drain's)
        tag = args['status_tag'] = args.get('status_tag') or 'evacuate-%s' % uuid.uuid4().hex

        # the drain, in the background on the host (async_wrapper, as 'async:' runs a module)
        saved = self._task.async_val
        self._task.async_val = opts['async_s']
        try:
            started = execute(module_name=MODULE, module_args=args, task_vars=task_vars, wrap_async=True)
        finally:
            self._task.async_val = saved
        jid = started.get('ansible_job_id')
        if started.get('failed') or not jid:
            return dict(result, failed=True, msg='the drain did not start in the background: %s' % (
                started.get('msg') or started))
        launched = time.monotonic()

        job = {}
        seen = {'dead_since': None}
        # (the async_status module expands the directory on the host: no round trip here for it)
        async_dir = self.get_shell_option('async_dir', default='~/.ansible_async')

        def job_done():
            """True once the drain's job has ended (its result is in JOB); FollowLost when it cannot be read."""
            res = read(module_name=ASYNC_STATUS, module_args={'jid': jid, '_async_dir': async_dir})
            if res.get('msg') == 'could not find job':
                if time.monotonic() - launched < JOB_FILE_GRACE_S:
                    return False     # (async_wrapper said "started" before writing its file)
                raise FollowLost('its job file is gone from %s' % async_dir)
            if res.get('failed') and not res.get('finished') or str(res.get('msg', '')).startswith(
                    'Could not parse job output'):
                raise FollowLost('its result cannot be read: %s' % (res.get('msg') or res))
            job.clear()
            job.update(res)
            if job.get('finished'):
                return True
            if seen['dead_since'] is not None and time.monotonic() - seen['dead_since'] > DEAD_GRACE_S:
                raise FollowLost('its status says its process is gone, and its job never ended')
            return False

        wait = {'s': min(2.0, opts['follow_interval_s'])}

        def status_round(status_args):
            """One status round; short until the drain's own status shows up, then follow_interval_s."""
            res = read(module_name=STATUS, module_args=dict(status_args, wait_s=wait['s']))
            ours = (res.get('status') or {}).get('tag') == tag
            if res.get('state') == 'running' and ours:
                wait['s'] = opts['follow_interval_s']
            elif res.get('state') == 'dead' and ours:
                seen['dead_since'] = seen['dead_since'] or time.monotonic()
            elif not ours:
                # (nothing of this drain's to wait for on the host: an earlier drain's status, or none yet; this
                # drain's own "finished" is followed at once by the read of its result)
                time.sleep(0.5)
            return res

        try:
            last = follow(status_round, {'status_file': args['status_file']}, host, opts['async_s'] + 60,
                          job_done=job_done, stale=lambda res: (res.get('status') or {}).get('tag') != tag)
            if last.get('failed') and not job.get('finished'):
                raise FollowLost('its progress cannot be read: %s' % (last.get('msg') or last))
            # (the status says finished a moment before the module returns: its result is read once it has)
            if not job.get('finished'):
                wait_until(job_done, 120, 0.25)
        except FollowLost as e:
            return dict(result, failed=True, ansible_job_id=jid, msg='the drain runs on in the background on %s '
                        '(job %s), or ended there, but %s - its status is in %s on the host; run the play again to '
                        'follow it to its end (a new drain is not started while it runs)' % (
                            host, jid, e, args['status_file']))
        if not job.get('finished'):
            return dict(result, failed=True, ansible_job_id=jid, msg='the drain in the background (job %s) did not '
                        'end within its bound (%s s)' % (jid, opts['async_s']))
        drained = dict((k, v) for k, v in job.items() if k not in ASYNC_KEYS)
        result.update(drained)
        result = self._keep(result, drained, opts)
        # the result kept, the job's file goes (a shell rm: no module run for it; a host gone just now keeps it)
        try:
            self._low_level_execute_command('rm -f -- %s' % self._job_file(async_dir, jid), sudoable=True)
        except AnsibleConnectionFailure as e:
            display.warning('%s: the drain\'s job file %s/%s stays (%s)' % (host, async_dir, jid, to_text(e)))
        return result

    def _keep(self, result, drained, opts):
        """The report and the calibration on the controller, as asked. Whatever goes wrong here, the drain's result
        stands and is returned."""
        try:
            if opts['report_dir']:
                result['report_files'] = save_report(opts['report_dir'], drained)
            if opts['calibration_file'] and drained.get('results') is not None:
                role_wall = time.time() - opts['started_at'] if opts['started_at'] is not None else None
                result['calibration_file'] = save_calibration(opts['calibration_file'], drained, role_wall,
                                                              opts['default_rate_mibps'])
        # (the drain is done: its result must reach the user whatever fails here)
        except Exception as e:  # pylint: disable=broad-except
            result.update(failed=True, msg='%s; and its report or calibration could not be written on the '
                          'controller: %s' % (result.get('msg') or 'the drain ended', to_text(e)))
        return result

    def _job_file(self, async_dir, jid):
        """The job's file for a shell command on the host: ~ left for the host's shell to expand."""
        quote = self._connection._shell.quote
        path = async_dir.rstrip('/') + '/' + jid
        if path.startswith('~/'):
            return '~/' + quote(path[2:])
        return quote(path)

    @staticmethod
    def _background_options(background, args):
        known = ('async_s', 'follow_interval_s', 'report_dir', 'calibration_file', 'started_at', 'default_rate_mibps')
        unknown = sorted(set(background) - set(known))
        if unknown:
            raise ValueError('unknown %s (known: %s)' % (', '.join(unknown), ', '.join(known)))
        opts = {'async_s': int(float(background.get('async_s') or async_bound(args))),
                'follow_interval_s': float(background.get('follow_interval_s') or 10),
                'report_dir': background.get('report_dir') or '',
                'calibration_file': background.get('calibration_file') or '',
                'started_at': float(background['started_at']) if background.get('started_at') not in (None, '') else None,
                'default_rate_mibps': float(background.get('default_rate_mibps') or 1000)}
        if opts['async_s'] <= 0 or opts['follow_interval_s'] <= 0:
            raise ValueError('async_s and follow_interval_s must be greater than 0')
        for key in ('report_dir', 'calibration_file'):
            opts[key] = os.path.expanduser(to_text(opts[key])) if opts[key] else ''
        return opts
