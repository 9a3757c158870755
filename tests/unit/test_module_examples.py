"""Every module's EXAMPLES run under the defaults: each example task's arguments pass the module's own argument
spec (as documented - ansible-test's validate-modules holds the documentation to the code), no example sends a
guest over plain TCP unless it says allow_plaintext, and every module points to its neighbours (seealso)."""
import ast
import glob
import importlib
import os

import pytest
import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = sorted(glob.glob(os.path.join(TOP, "plugins", "modules", "*.py")))
KEYS = ("type", "choices", "required", "elements", "aliases", "default", "no_log")


def docs(path):
    """DOCUMENTATION and EXAMPLES of a module file, read without importing it."""
    with open(path) as f:
        tree = ast.parse(f.read())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) in ("DOCUMENTATION", "EXAMPLES"):
            out[node.targets[0].id] = node.value.value
    return yaml.safe_load(out["DOCUMENTATION"]), out["EXAMPLES"]


def spec(options):
    """An argument spec from documented OPTIONS."""
    out = {}
    for name, o in (options or {}).items():
        s = dict((k, o[k]) for k in KEYS if k in o)
        if o.get("suboptions"):
            s["options"] = spec(o["suboptions"])
        out[name] = s
    return out


def templated(value):
    return isinstance(value, str) and "{{" in value


def untemplated(value):
    """VALUE without its templated parts (their types are known only when the task runs)."""
    if isinstance(value, dict):
        return dict((k, untemplated(v)) for k, v in value.items() if not templated(v))
    return value


def tasks(examples):
    """Every task of an EXAMPLES block (in blocks too)."""
    def walk(items):
        for t in items or []:
            if isinstance(t, dict) and "block" in t:
                yield from walk(t["block"] if isinstance(t["block"], list) else [])
            elif isinstance(t, dict):
                yield t
    return list(walk(yaml.safe_load(examples)))


def module_tasks(path):
    name = os.path.basename(path)[:-3]
    doc, examples = docs(path)
    found = []
    for t in tasks(examples):
        for key in ("vmmigration.libvirt." + name, name):
            if key in t:
                found.append((t.get("name", "?"), t[key] or {}, t))
    return doc, found


@pytest.mark.parametrize("path", MODULES, ids=[os.path.basename(p)[:-3] for p in MODULES])
def test_every_example_task_passes_the_modules_argument_spec(path):
    doc, found = module_tasks(path)
    assert found, "%s: no example uses the module" % os.path.basename(path)
    argument_spec = spec(doc.get("options"))
    for fragment in doc.get("extends_documentation_fragment") or []:
        # (the shared options - connection, evacuation - are documented in doc fragments)
        argument_spec.update(fragment_options(fragment))
    problems = []
    for name, args, _task in found:
        assert isinstance(args, dict), "%s: %s - give the arguments as a dict" % (os.path.basename(path), name)
        plain = dict((k, untemplated(v)) for k, v in args.items() if not templated(v))
        unknown = sorted(set(args) - set(argument_spec) - set(
            a for s in argument_spec.values() for a in s.get("aliases") or []))
        if unknown:
            problems.append("%s: unknown options %s" % (name, unknown))
            continue
        # (a required option given as a template is given)
        for k in args:
            if templated(args[k]) and argument_spec.get(k, {}).get("required"):
                plain.setdefault(k, _placeholder(argument_spec[k]))
        result = ArgumentSpecValidator(argument_spec).validate(plain)
        problems += ["%s: %s" % (name, e) for e in result.error_messages]
    assert problems == [], "%s EXAMPLES: %s" % (os.path.basename(path), problems)


def _placeholder(s):
    return {"str": "x", "path": "/x", "int": 1, "float": 1.0, "bool": True, "list": [], "dict": {}, "raw": "x"}.get(
        s.get("type", "str"), "x")


def fragment_options(name):
    """The options of doc fragment NAME (vmmigration.libvirt.connection, or .attributes.info_module's none)."""
    base, _dot, part = name.replace("vmmigration.libvirt.", "").partition(".")
    path = os.path.join(TOP, "plugins", "doc_fragments", base + ".py")
    if not os.path.exists(path):
        return {}
    # (imported, as ansible-doc does: a fragment may build its text from parts)
    fragment = importlib.import_module("ansible_collections.vmmigration.libvirt.plugins.doc_fragments." + base)
    text = getattr(fragment.ModuleDocFragment, part.upper() if part else "DOCUMENTATION", None)
    return spec((yaml.safe_load(text) or {}).get("options")) if text else {}


@pytest.mark.parametrize("path", MODULES, ids=[os.path.basename(p)[:-3] for p in MODULES])
def test_no_example_sends_a_guest_in_the_clear_unless_it_says_so(path):
    _doc, found = module_tasks(path)
    for name, _args, task in found:
        text = yaml.safe_dump(task)
        if "qemu+tcp://" in text or "tls: disabled" in text:
            assert "allow_plaintext" in text, "%s: %s uses plain TCP without allow_plaintext" % (
                os.path.basename(path), name)


@pytest.mark.parametrize("path", MODULES, ids=[os.path.basename(p)[:-3] for p in MODULES])
def test_every_module_points_to_its_neighbours(path):
    doc, _examples = docs(path)
    assert doc.get("seealso"), "%s: no seealso" % os.path.basename(path)


DOMAIN_MODULES = ("cold_migrate", "domain_addresses", "ip_advertise", "migrate", "migration_job_info", "shared_storage")


@pytest.mark.parametrize("name", DOMAIN_MODULES)
def test_name_is_the_domain_as_community_libvirt_calls_it(name):
    doc, _examples = docs(os.path.join(TOP, "plugins", "modules", name + ".py"))
    argument_spec = spec(doc["options"])
    required = dict((k, _placeholder(s)) for k, s in argument_spec.items() if s.get("required") and k != "domain")
    result = ArgumentSpecValidator(argument_spec).validate(dict(required, name="web01"))
    assert result.error_messages == [] and result.validated_parameters["domain"] == "web01"
