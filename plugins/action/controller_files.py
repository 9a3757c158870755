# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""controller_files: the roles' records on the controller (plans, reports, timelines, run records), written by
the controller itself in one task - no connection, no module run on any host (a copy delegated to localhost
costs a local module run per file)."""

import json
import os
import tempfile

from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.action import ActionBase

SPEC = {'dir': {'type': 'path', 'required': True},
        'files': {'type': 'list', 'elements': 'dict', 'required': True,
                  'options': {'name': {'type': 'str', 'required': True},
                              'content': {'type': 'raw'},
                              'json': {'type': 'raw'}}},
        'mode': {'type': 'str', 'default': '0600'},
        'dir_mode': {'type': 'str', 'default': '0700'}}


def _text(entry):
    """A file's text: CONTENT as it is, or JSON as Ansible's to_nice_json writes it (with a final newline)."""
    if entry.get('json') is not None:
        return json.dumps(entry['json'], indent=4, sort_keys=True, ensure_ascii=False, default=to_text) + '\n'
    return to_text(entry.get('content') if entry.get('content') is not None else '')


def write_atomic(path, data, mode):
    """DATA (bytes) to PATH by a rename: a reader sees the old file or the new one, never half of it."""
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            # (on disk before the rename: a controller that crashes leaves the old file, never an empty one)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class ActionModule(ActionBase):
    """Write files on the controller."""

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _spec, args = self.validate_argument_spec(argument_spec=SPEC)
        try:
            mode, dir_mode = int(args['mode'], 8), int(args['dir_mode'], 8)
        except ValueError:
            return dict(result, failed=True, msg='mode and dir_mode are octal numbers such as 0600 (got %s, %s)'
                        % (args['mode'], args['dir_mode']))
        bad = [f['name'] for f in args['files'] if not f['name'] or os.path.basename(f['name']) != f['name']
               or f['name'] in ('.', '..')]
        if bad:
            return dict(result, failed=True, msg='files: give plain file names inside dir (got %s)' % ', '.join(bad))
        base = args['dir']
        written, changed = [], False
        for entry in args['files']:
            path = os.path.join(base, entry['name'])
            data = to_bytes(_text(entry))
            try:
                with open(path, 'rb') as f:
                    same = f.read() == data
            except (IOError, OSError):
                same = False
            changed = changed or not same
            written.append(path)
            if same or self._task.check_mode:
                continue
            try:
                if not os.path.isdir(base):
                    os.makedirs(base, dir_mode)
                write_atomic(path, data, mode)
            except (IOError, OSError) as e:
                return dict(result, failed=True, changed=changed, paths=written,
                            msg='cannot write %s on the controller: %s' % (path, to_text(e)))
        result.update(changed=changed, paths=written)
        return result
