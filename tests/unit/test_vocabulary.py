"""One vocabulary across the collection: an option name means one thing - the same type everywhere, and for the
ideas several modules and roles share, the same default; every duration says its unit; no choice is a word YAML
reads as a boolean."""
import glob
import os
import re

import pytest
import yaml

from ansible_collections.vmmigration.libvirt.tests.unit.plugins.plugin_utils.test_renamed import documented

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(TOP, 'plugins', 'modules', '*.py')))
ROLE_SPECS = sorted(glob.glob(os.path.join(TOP, 'roles', '*', 'meta', 'argument_specs.yml')))
# the ideas several modules share: one default
SHARED = {'headroom_mib': 1024, 'tls': 'auto', 'allow_plaintext': False, 'announce': True, 'non_live_policy': 'skip',
          'uri': 'qemu:///system', 'connect_retries': 2, 'connect_retry_delay_s': 0.5, 'verify_timeout_s': 10}
YAML_BOOLEAN_WORDS = {'y', 'yes', 'n', 'no', 'true', 'false', 'on', 'off'}


def walk(where, options, nested):
    """(where, name, option) for OPTIONS and, below each, its NESTED ones (suboptions, or a role's options)."""
    for name, o in (options or {}).items():
        yield where, name, o
        yield from walk('%s.%s' % (where, name), o.get(nested), nested)


def all_options():
    """(where, name, documented option) for every module option and suboption."""
    for module in MODULES:
        yield from walk(module, documented(module), 'suboptions')


def test_an_option_name_has_one_type_everywhere():
    seen = {}
    for where, name, o in all_options():
        seen.setdefault(name, {}).setdefault(o.get('type', 'str'), []).append(where)
    clashes = dict((n, t) for n, t in seen.items() if len(t) > 1)
    assert clashes == {}


def test_the_shared_ideas_have_one_default_in_every_module_and_role():
    found = dict((k, 0) for k in SHARED)
    for where, name, o in all_options():
        if name in SHARED and '.' not in where:
            assert o.get('default') == SHARED[name], '%s: %s defaults to %r' % (where, name, o.get('default'))
            found[name] += 1
    assert all(found.values()), found
    # the roles' own variables for the same ideas (ROLE_headroom_mib, ROLE_tls, ...) default the same
    checked = 0
    for path in ROLE_SPECS:
        role = path.split(os.sep)[-3]
        with open(path) as f:
            specs = yaml.safe_load(f)['argument_specs']
        for entry in specs.values():
            for var, o in (entry.get('options') or {}).items():
                idea = var[len(role) + 1:] if var.startswith(role + '_') else None
                if idea in SHARED and 'default' in o:
                    checked += 1
                    assert o['default'] == SHARED[idea], '%s: %s defaults to %r' % (path, var, o['default'])
    assert checked >= 8, checked


def test_every_duration_names_its_unit():
    bad = [(w, n) for w, n, _o in all_options()
           if re.search(r'timeout|delay|interval|duration|wait', n) and not re.search(r'_(s|ms)(_|$)', n)]
    assert bad == []


def test_no_choice_is_a_word_yaml_reads_as_a_boolean():
    bad = [(w, n, c) for w, n, o in all_options() for c in o.get('choices') or []
           if isinstance(c, str) and c.lower() in YAML_BOOLEAN_WORDS]
    assert bad == []


@pytest.mark.parametrize('module', ['migrate', 'cold_migrate', 'migration_check'])
def test_tls_is_a_choice_of_three_words(module):
    assert documented(module)['tls']['choices'] == ['auto', 'required', 'disabled']


# durations that must be whole seconds, with why
WHOLE_SECONDS = {'dirty_rate_sample_s': "QEMU's calc-dirty-rate measures over whole seconds",
                 'async_s': "Ansible's async limit is whole seconds",
                 'rolling_maintenance_gate_timeout_s': "wait_for_connection's timeout is whole seconds"}


def role_options():
    """(where, name, option) for every option and sub-option of every role's argument spec."""
    for path in ROLE_SPECS:
        with open(path) as f:
            for entry, spec in yaml.safe_load(f)['argument_specs'].items():
                yield from walk('%s:%s' % (path.split(os.sep)[-3], entry), spec.get('options'), 'options')


def test_every_duration_in_seconds_is_a_float_unless_it_must_be_whole():
    bad = [(w, n, o.get('type')) for w, n, o in list(all_options()) + list(role_options())
           if re.search(r'_s(_|$)', n) and o.get('type') != 'float' and n not in WHOLE_SECONDS]
    assert bad == []


def test_every_file_or_directory_option_is_a_path():
    bad = [(w, n, o.get('type')) for w, n, o in list(all_options()) + list(role_options())
           if re.search(r'_(dir|file)$', n) and o.get('type') != 'path']
    assert bad == []
