# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""as_data: a role option as the dict or list it is, also when an AWX survey sent it as text (docs: as_data.yml)."""

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

try:
    import yaml
except ImportError:  # pragma: no cover
    yaml = None

KINDS = {'dict': dict, 'list': list}


def as_data(value, kind='dict', name='value'):
    """VALUE as a KIND (dict or list): unchanged when it is one, parsed as YAML (or JSON) when it is text - what an
    AWX survey's textarea sends - and the empty KIND for empty text or None."""
    if kind not in KINDS:
        raise AnsibleFilterError('as_data: kind must be dict or list (got %r)' % (kind,))
    want = KINDS[kind]
    if value is None:
        return want()
    if isinstance(value, str):
        text = to_text(value).strip()
        if not text:
            return want()
        if yaml is None:  # pragma: no cover
            raise AnsibleFilterError('as_data: %s is text and PyYAML is missing to read it' % name)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise AnsibleFilterError('%s: expected a %s, as YAML or JSON text, but it does not parse: %s' % (name, kind, e))
        if value is None:
            return want()
    if isinstance(value, want):
        return value
    if kind == 'list' and isinstance(value, tuple):
        return list(value)
    raise AnsibleFilterError('%s: expected a %s, got %s: %r' % (name, kind, type(value).__name__, value))


class FilterModule:  # pylint: disable=too-few-public-methods
    def filters(self):
        return {'as_data': as_data}
