"""AWX / Automation Controller survey specs generated from the roles' argument specs (AWX does not
read argument specs itself), so that the two are never written twice.

  python docs/awx/make_surveys.py          # (re)write docs/awx/surveys/<role>.json
  python docs/awx/make_surveys.py --check  # exit 1 when a survey is out of date

Types: str -> text (multiplechoice with choices), int -> integer, float -> float, bool -> a
true/false choice, lists of choices -> multiselect, other lists and dicts -> textarea (YAML or JSON: the role's
argument spec validates the text, the roles read it with the vmmigration.libvirt.as_data filter).
"""
import json
import os
import re
import sys

import yaml

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(TOP, "docs", "awx", "surveys")


# ansible-doc markup, which an AWX survey shows as it is: O(name=value), V(x), C(x), RV(x), M(fqcn), I(x), B(x),
# P(fqcn#type), E(VAR), L(text,url), U(url), R(text,anchor), HORIZONTALLINE
MARKUP = re.compile(r"\b(?:O|V|C|RV|M|I|B|P|E|U)\(([^()]*)\)")
LINK = re.compile(r"\b[LR]\(([^,()]*),[^()]*\)")


def plain(text):
    """TEXT without ansible-doc markup: O(a.b=c) reads a.b=c, M(x.y.z#module:o) reads x.y.z's o, L(t,u) reads t."""
    def one(m):
        inner = m.group(1)
        if "#" in inner:   # M(ns.coll.mod#module:option) / O(ns.coll.mod#module:option)
            what, _sep, option = inner.partition("#")
            inner = "%s %s" % (what, option.split(":", 1)[-1]) if ":" in option else what
        return inner
    text = LINK.sub(lambda m: m.group(1), text).replace("HORIZONTALLINE", "")
    return MARKUP.sub(one, text)


def question(role, name, spec):
    desc = spec.get("description", "")
    desc = plain(" ".join(desc) if isinstance(desc, list) else desc)
    short = name[len(role) + 1:] if name.startswith(role + "_") else name
    q = {"variable": name, "question_name": spec.get("label") or short.replace("_", " ").capitalize(),
         "question_description": desc, "required": bool(spec.get("required"))}
    kind = spec.get("type", "str")
    default = spec.get("default")
    if kind == "bool":
        q.update(type="multiplechoice", choices=["true", "false"],
                 default="" if default is None else str(bool(default)).lower())
    elif kind == "int":
        q.update(type="integer", default="" if default is None else default, min=0, max=2 ** 31 - 1)
    elif kind == "float":
        q.update(type="float", default="" if default is None else default, min=0, max=1e9)
    elif kind == "list" and spec.get("choices"):
        q.update(type="multiselect", choices=list(spec["choices"]), default="\n".join(default or []))
    elif kind in ("list", "dict"):
        q.update(type="textarea", default="" if default in (None, [], {}) else json.dumps(default))
    elif spec.get("choices"):
        q.update(type="multiplechoice", choices=list(spec["choices"]), default=default or "")
    else:
        q.update(type="text", default=default or "", min=0, max=1024)
    return q


# The variables each playbook (playbooks/<role>.yml) reads itself, asked first and by the playbook's own
# names: without them the playbook has nothing to act on (it refuses to start).
PLAYBOOK_VARS = {
    "evacuate_host": {"source": {"type": "str", "required": True,
                                 "description": "The hypervisor to drain: one host of the inventory."}},
    "preflight": {"source": {"type": "str", "required": True,
                             "description": "The hypervisor to plan the moves off: one host of the inventory."}},
    "migrate_vm": {
        "vm": {"type": "str", "required": True, "label": "VM", "description": "The VM (libvirt domain name) to move."},
        "source": {"type": "str", "required": True, "description": "The hypervisor it runs on: one host of the inventory."},
        "destination": {"type": "str", "required": True,
                        "description": "The hypervisor to move it to: another host of the inventory."},
    },
    "rolling_maintenance": {"rolling_maintenance_group": {
        "type": "str", "required": True, "default": "hypervisors",
        "description": "The inventory group of hypervisors to maintain, host by host."}},
    "tls": {"targets": {"type": "str", "required": True, "default": "hypervisors",
                        "description": "The inventory group (or host) to set up for TLS migration."}},
}
# Role options a playbook sets from its own variables (a survey answer would override them): not asked.
SET_BY_PLAYBOOK = {"migrate_vm": ("migrate_vm_domain", "migrate_vm_destination")}
# Role options a credential injects (docs/awx/credential_type_*.yml): a secret has no place in a survey, and an
# empty answer would hide the credential's value. Not asked.
FROM_CREDENTIAL = {"tls": ("tls_ca_cert_pem", "tls_ca_key_pem")}


def survey(role):
    with open(os.path.join(TOP, "roles", role, "meta", "argument_specs.yml")) as f:
        main = yaml.safe_load(f)["argument_specs"]["main"]
    own = [question("", n, s) for n, s in PLAYBOOK_VARS.get(role, {}).items()]
    return {"name": "vmmigration.libvirt.%s" % role, "description": main["short_description"],
            "spec": own + [question(role, n, s) for n, s in main.get("options", {}).items()
                           if n not in SET_BY_PLAYBOOK.get(role, ()) + FROM_CREDENTIAL.get(role, ())
                           and n not in PLAYBOOK_VARS.get(role, {})]}


def main(argv):
    check = "--check" in argv
    stale = []
    for role in sorted(os.listdir(os.path.join(TOP, "roles"))):
        text = json.dumps(survey(role), indent=2, sort_keys=True) + "\n"
        path = os.path.join(OUT, role + ".json")
        old = open(path).read() if os.path.exists(path) else None
        if old != text:
            stale.append(path)
            if not check:
                with open(path, "w") as f:
                    f.write(text)
    if check and stale:
        print("out of date (run python docs/awx/make_surveys.py): %s" % ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
