"""Every module that talks to libvirt starts libvirt's event loop (connection.start_event_loop) before it opens
its first connection: without the loop the keepalive set on each connection does nothing, and a call to a
libvirtd that stopped answering would block the module for ever instead of failing after about 20 s.

Read from each module's source with ast (nothing is imported), so that a new module cannot forget it."""
import ast
import os

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = os.path.join(TOP, "plugins", "modules")

# what opens a connection (called), and what only a module that connects uses
OPENS = {"libvirt_session", "LibvirtClient", "ClientCache"}
CONNECTS = OPENS | {"require_libvirt"}


def _name(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _calls(tree, names):
    """The calls under TREE of a function or class named in NAMES, in source order."""
    found = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _name(n.func) in names]
    return sorted(found, key=lambda n: (n.lineno, n.col_offset))


def uses(tree):
    """The names of CONNECTS that TREE imports or refers to."""
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            used.update(a.name for a in node.names)
        elif _name(node) is not None:
            used.add(_name(node))
    return used & CONNECTS


def problems(source, label):
    """Why the module in SOURCE does not start the event loop before it connects (empty: it does, or never connects)."""
    tree = ast.parse(source)
    if not uses(tree):
        return []
    if not _calls(tree, {"start_event_loop"}):
        return ["%s connects to libvirt (%s) but never calls start_event_loop()" % (label, ", ".join(sorted(uses(tree))))]
    out = []
    for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        opened = [c for c in _calls(fn, OPENS) if not any(c in ast.walk(f) for f in _nested(fn))]
        if not opened:
            continue
        first = opened[0]
        before = [c for c in _calls(fn, {"start_event_loop"}) if (c.lineno, c.col_offset) < (first.lineno, first.col_offset)]
        if not before:
            out.append("%s: %s() opens a connection (%s, line %d) before any start_event_loop() in it"
                       % (label, fn.name, _name(first.func), first.lineno))
    return out


def _nested(fn):
    """Functions defined inside FN (their calls are checked on their own)."""
    return [n for n in ast.walk(fn) if n is not fn and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def module_sources():
    for name in sorted(os.listdir(MODULES)):
        if name.endswith(".py") and name != "__init__.py":
            with open(os.path.join(MODULES, name)) as f:
                yield name, f.read()


def test_every_module_that_connects_starts_the_event_loop_first():
    connecting, found = [], []
    for name, source in module_sources():
        if uses(ast.parse(source)):
            connecting.append(name)
        found += problems(source, "plugins/modules/" + name)
    assert not found, "\n".join(found)
    # the check sees what it should: the modules that move VMs connect, those that never do are left alone
    assert {"migrate.py", "cold_migrate.py", "evacuate.py", "host_info.py"} <= set(connecting)
    assert not {"ip_reachable.py", "evacuation_status.py", "controller_files.py"} & set(connecting)


def test_the_check_catches_a_module_that_forgets():
    good = (
        "from x._client import libvirt_session, require_libvirt, start_event_loop\n"
        "def main():\n"
        "    require_libvirt(module)\n"
        "    start_event_loop()\n"
        "    with libvirt_session(module) as cache:\n"
        "        cache.get('qemu:///system')\n")
    assert problems(good, "good") == []
    forgot = good.replace("    start_event_loop()\n", "")
    assert "never calls start_event_loop()" in problems(forgot, "forgot")[0]
    late = forgot + "    start_event_loop()\n"
    assert "main() opens a connection (libvirt_session, line 4) before any start_event_loop()" in problems(late, "late")[0]
    direct = "from x._client import LibvirtClient\ndef main():\n    LibvirtClient('qemu:///system').capabilities()\n"
    assert "never calls start_event_loop()" in problems(direct, "direct")[0]
    assert problems("import time\ndef main():\n    time.sleep(1)\n", "none") == []
