"""AWX artefacts: the surveys are current and valid, and the execution environment's build context
holds the collection and what it needs (ansible-builder create; building the image needs a container
registry this machine cannot reach)."""
import json
import os
import re
import subprocess
import sys

import yaml

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "docs", "awx"))
import make_surveys  # noqa: E402  pylint: disable=wrong-import-position

SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}


def test_surveys_are_current():
    assert make_surveys.main(["--check"]) == 0, "run: python docs/awx/make_surveys.py"


def test_surveys_ask_the_target_then_a_few_options_for_people():
    for role in os.listdir(os.path.join(TOP, "roles")):
        with open(os.path.join(TOP, "roles", role, "meta", "argument_specs.yml")) as f:
            options = yaml.safe_load(f)["argument_specs"]["main"]["options"]
        with open(os.path.join(TOP, "docs", "awx", "surveys", role + ".json")) as f:
            survey = json.load(f)
        own = make_surveys.PLAYBOOK_VARS.get(role, {})
        set_by_playbook = make_surveys.SET_BY_PLAYBOOK.get(role, ())
        credential = make_surveys.FROM_CREDENTIAL.get(role, ())
        asked = [q["variable"] for q in survey["spec"]]
        # the playbook's own variables first; then role options only, none the playbook sets or a credential gives
        assert asked[:len(own)] == list(own), (role, asked)
        assert all(v in options and v not in set_by_playbook + credential for v in asked[len(own):]), (role, asked)
        # the common path: 5 to 8 questions
        assert 5 <= len(asked) <= 8, (role, len(asked))
        # the playbook's own variables, by its names, asked first and required: a survey never launches a no-op
        with open(os.path.join(TOP, "playbooks", role + ".yml")) as f:
            playbook = f.read()
        for name in own:
            assert re.search(r"\b%s\b" % name, playbook), "%s: the playbook does not read %s" % (role, name)
        for name in set_by_playbook:
            assert re.search(r"%s: .*\{\{" % name, playbook), "%s: the playbook does not set %s" % (role, name)
        options = dict(options, **own)
        for q in survey["spec"]:
            assert q["type"] in SURVEY_TYPES and q["question_name"] and q["question_description"]
            # labelled for people: words, not variable names; described in a sentence or two
            assert "_" not in q["question_name"] and len(q["question_description"]) <= 160, q
            # plain text: AWX shows a survey's description as it is, not as ansible-doc renders it
            assert not re.search(r"\b(O|V|C|RV|M|I|B|P|E|L|U|R)\(", q["question_description"]), q
            if q["type"] in ("multiplechoice", "multiselect"):
                assert q["choices"] and (q["default"] == "" or all(d in q["choices"] for d in q["default"].split("\n")))
            assert q["required"] == bool(options[q["variable"]].get("required"))
            # a choice the role offers is offered as a choice, with the role's default
            if options[q["variable"]].get("choices"):
                assert q["choices"] == list(options[q["variable"]]["choices"]), q
    # booleans become a true/false choice, required options required questions
    migrate_vm = dict((q["variable"], q) for q in make_surveys.survey("migrate_vm")["spec"])
    assert migrate_vm["migrate_vm_advertise"]["choices"] == ["true", "false"]
    assert [v for v, q in migrate_vm.items() if q["required"]] == ["vm", "source", "destination"]
    assert "migrate_vm_domain" not in migrate_vm
    for role in ("evacuate_host", "preflight"):
        assert make_surveys.survey(role)["spec"][0]["variable"] == "source"
    tls = dict((q["variable"], q) for q in make_surveys.survey("tls")["spec"])
    assert tls["tls_replace_ca"]["choices"] == ["true", "false"] and tls["tls_replace_ca"]["default"] == "false"


def test_execution_environment_context(tmp_path):
    env = dict(os.environ, PATH=os.path.join(TOP, ".venv", "bin") + os.pathsep + os.environ["PATH"],
               CONTEXT_ONLY="1", CONTEXT_DIR=str(tmp_path / "ctx"))
    subprocess.run(["bash", os.path.join(TOP, "docs", "awx", "build-ee.sh")], env=env, check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ctx = tmp_path / "ctx"
    assert (ctx / "_build" / "collections" / "vmmigration-libvirt.tar.gz").stat().st_size > 10000
    build_file = [p for p in ("Containerfile", "Dockerfile") if (ctx / p).exists()][0]
    text = (ctx / build_file).read_text()
    assert "ansible-galaxy collection install" in text and "introspect" in text
    os.unlink(os.path.join(TOP, "docs", "awx", "vmmigration-libvirt.tar.gz"))


def test_collection_declares_its_ee_dependencies(tmp_path):
    coll = tmp_path / "ansible_collections" / "vmmigration"
    coll.mkdir(parents=True)
    os.symlink(TOP, str(coll / "libvirt"))
    out = subprocess.run([os.path.join(TOP, ".venv", "bin", "ansible-builder"), "introspect", str(tmp_path)],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    assert "libvirt-python" in out and "libvirt-dev [platform:dpkg compile]" in out


def test_plain_strips_ansible_doc_markup():
    assert make_surveys.plain("Set O(evacuate_host_tls=auto) or V(off); see M(vmmigration.libvirt.migrate), "
                              "L(the docs,https://example.org) and C(virsh list).") == \
        "Set evacuate_host_tls=auto or off; see vmmigration.libvirt.migrate, the docs and virsh list."
    assert make_surveys.plain("RV(vmmigration.libvirt.host_info#module:transport_security)") == \
        "vmmigration.libvirt.host_info transport_security"


def test_credential_types_inject_what_the_surveys_leave_out():
    """Each docs/awx/credential_type_*.yml injects role options as extra vars - exactly those the surveys do
    not ask (make_surveys.FROM_CREDENTIAL) - and keeps its secret inputs secret (no_log options)."""
    injected = {}
    for name in sorted(os.listdir(os.path.join(TOP, "docs", "awx"))):
        if name.startswith("credential_type_") and name.endswith(".yml"):
            with open(os.path.join(TOP, "docs", "awx", name)) as f:
                ctype = yaml.safe_load(f)
            fields = dict((field["id"], field) for field in ctype["inputs"]["fields"])
            assert set(ctype["inputs"]["required"]) <= set(fields) and set(ctype["injectors"]) == {"extra_vars"}
            for var, value in ctype["injectors"]["extra_vars"].items():
                field = re.fullmatch(r"\{\{ (\w+) \}\}", value).group(1)
                injected[var] = fields[field]
    assert injected
    for role, names in make_surveys.FROM_CREDENTIAL.items():
        with open(os.path.join(TOP, "roles", role, "meta", "argument_specs.yml")) as f:
            options = yaml.safe_load(f)["argument_specs"]["main"]["options"]
        for var in names:
            assert bool(injected.pop(var).get("secret")) == bool(options[var].get("no_log")), var
    assert not injected, "injected but asked by a survey too: %s" % sorted(injected)
