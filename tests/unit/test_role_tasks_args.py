"""Every task of the roles, playbooks and examples that runs one of the collection's modules gives only options the
module has (by name or alias) and none by a name it no longer has - a role that passes a renamed option fails every
run, and only a lab run would otherwise tell."""
import glob
import os

import pytest
import yaml

from ansible_collections.vmmigration.libvirt.plugins.plugin_utils import renamed as R
from ansible_collections.vmmigration.libvirt.tests.unit.plugins.plugin_utils.test_renamed import documented

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = sorted(set(glob.glob(os.path.join(TOP, 'roles', '*', 'tasks', '*.yml'))
                   + glob.glob(os.path.join(TOP, 'roles', '*', 'handlers', '*.yml'))
                   + glob.glob(os.path.join(TOP, 'playbooks', '*.yml'))
                   + glob.glob(os.path.join(TOP, 'docs', 'examples', '*.yml'))
                   + glob.glob(os.path.join(TOP, 'extensions', 'molecule', '*', '*.yml'))
                   + glob.glob(os.path.join(TOP, 'tests', 'integration', 'targets', '*', 'tasks', '*.yml'))))
PREFIX = 'vmmigration.libvirt.'


def module_tasks(node):
    """(module, its arguments) of every task in NODE (plays, blocks, tasks, anywhere)."""
    if isinstance(node, list):
        for item in node:
            yield from module_tasks(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and key.startswith(PREFIX) and key.count('.') == 2:
                yield key[len(PREFIX):], value
            elif key in ('tasks', 'pre_tasks', 'post_tasks', 'handlers', 'block', 'rescue', 'always'):
                yield from module_tasks(value)


def options_of(module):
    options = documented(module)
    return set(options) | set(a for o in options.values() for a in o.get('aliases') or [])


@pytest.mark.parametrize('path', FILES, ids=[os.path.relpath(p, TOP) for p in FILES])
def test_every_collection_module_task_gives_options_its_module_has(path):
    with open(path) as f:
        tree = yaml.safe_load(f)
    problems = []
    for module, args in module_tasks(tree):
        if not isinstance(args, dict):
            continue
        args = dict((k, v) for k, v in args.items() if k != '<<')
        unknown = sorted(set(args) - options_of(module))
        if unknown:
            problems.append('%s: %s' % (module, unknown))
        problems += ['%s: %s' % (module, p) for p in R.renamed_problems(module, args)]
    assert problems == []


def test_the_files_are_found():
    # (the roles' own tasks are among them, and some run the collection's modules; the source repository has the
    # molecule scenarios and integration targets too, which the built collection does not ship)
    found = sum(1 for p in FILES for _m in module_tasks(yaml.safe_load(open(p))))
    assert found > (40 if os.path.isdir(os.path.join(TOP, 'extensions')) else 20), found
