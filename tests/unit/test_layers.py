"""The layers of plugins/module_utils are the folders (docs/docsite/rst/guide_design.rst): driver, decide, engines,
orchestration, each importing only what is below it; no logic outside them, and no class too large to hold in
one's head."""
import ast
import glob
import os

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MU = os.path.join(TOP, "plugins", "module_utils")
PREFIX = "ansible_collections.vmmigration.libvirt.plugins.module_utils."
LAYERS = ("driver", "decide", "engines", "orchestration")
# what each layer may import besides itself; the engines also use the report's pure text renderers (a drain's
# result carries its table)
MAY = {"driver": set(), "decide": {"driver"}, "engines": {"driver", "decide", "orchestration.report"},
       "orchestration": {"driver", "decide", "engines"}}
MAX_CLASS_LINES = 300


def imports(path):
    """Every module_utils module PATH imports, as 'layer.module' (import-time and inside functions alike)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            rest = node.module[len(PREFIX):]
            if "." in rest:
                out.add(rest)
            else:                                   # from ...module_utils.LAYER import MODULE
                out.update("%s.%s" % (rest, a.name) for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name[len(PREFIX):] for a in node.names if a.name.startswith(PREFIX))
    return out


def test_all_logic_lives_in_a_layer_folder():
    assert sorted(os.listdir(MU)) == sorted(LAYERS), os.listdir(MU)
    for layer in LAYERS:
        assert glob.glob(os.path.join(MU, layer, "*.py")), layer
        assert not os.path.exists(os.path.join(MU, layer, "__init__.py"))


def test_each_layer_imports_only_what_is_below_it():
    wrong = []
    for layer in LAYERS:
        for path in sorted(glob.glob(os.path.join(MU, layer, "*.py"))):
            for name in imports(path):
                target = name.split(".")[0]
                if target != layer and target not in MAY[layer] and name not in MAY[layer]:
                    wrong.append("%s/%s imports %s" % (layer, os.path.basename(path), name))
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from %sengines import live as L\nfrom %sdecide.checks import recommend\n" % (PREFIX, PREFIX))
    assert imports(str(bad)) == {"engines.live", "decide.checks"}


def test_no_class_over_300_lines():
    big = []
    for path in glob.glob(os.path.join(TOP, "plugins", "**", "*.py"), recursive=True):
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                big.append("%s: %s has %d lines" % (os.path.relpath(path, TOP), node.name,
                                                    node.end_lineno - node.lineno + 1))
    assert not big, "\n".join(big)
