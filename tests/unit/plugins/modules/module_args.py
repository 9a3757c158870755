"""Module arguments for a module's main() in a unit test, on every ansible-core the collection supports."""
import contextlib
import json

from ansible.module_utils import basic

try:
    from ansible.module_utils.testing import patch_module_args  # noqa: F401  pylint: disable=unused-import
except ImportError:     # ansible-core before 2.19
    @contextlib.contextmanager
    def patch_module_args(args):
        old = basic._ANSIBLE_ARGS  # pylint: disable=protected-access
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()  # pylint: disable=protected-access
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = old  # pylint: disable=protected-access


def run_main(main, args):
    """Run a module's MAIN with ARGS: its result (exit_json's keys, or fail_json's with failed and msg), and what it
    warned ('warned'), as the module gives them - never printed."""
    import pytest  # pylint: disable=import-outside-toplevel
    out = {}

    def done(self, **kw):  # pylint: disable=unused-argument
        out.update(kw)
        raise SystemExit(0)

    def failed(self, msg, **kw):  # pylint: disable=unused-argument
        out.update(kw, failed=True, msg=msg)
        raise SystemExit(1)

    def warn(self, msg):  # pylint: disable=unused-argument
        out.setdefault("warned", []).append(msg)
    orig = (basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json, basic.AnsibleModule.warn)
    basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json, basic.AnsibleModule.warn = done, failed, warn
    try:
        with patch_module_args(args):
            with pytest.raises(SystemExit):
                main()
    finally:
        basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json, basic.AnsibleModule.warn = orig
    return out
