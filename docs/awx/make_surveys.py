"""AWX / Automation Controller survey specs generated from the roles' argument specs (AWX does not
read argument specs itself), so that the two are never written twice.

Each survey asks what its playbook acts on (required, by the playbook's own names), then the few options an
operator changes from one launch to the next - 5 to 8 questions in all, labelled for people, each described in a
sentence. Every other option of the role is set once, in the job template's extra variables; the guide
(docs/docsite/rst/guide_awx.rst) and ansible-doc -t role say what each does.

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


# The options each survey asks after the playbook's own variables, in order: (variable, label, one sentence).
# The rest are the job template's extra variables.
ASKED = {
    "evacuate_host": [
        ("evacuate_host_destinations", "Move the VMs only to",
         "Hypervisors to move the VMs to, one per line (YAML or JSON list). Empty: every other host of the group."),
        ("evacuate_host_non_live_policy", "VMs that cannot move live",
         "skip leaves them running on the host, shutdown stops them, cold moves them shut down."),
        ("evacuate_host_headroom_mib", "Memory to keep free on each destination (MiB)",
         "A destination never gets VMs past its free memory less this."),
        ("evacuate_host_timeout_s", "Time limit for the drain (s)",
         "Past it no new move starts; the moves running finish."),
        ("evacuate_host_return_home", "Bring the VMs back instead",
         "true: move back to this host, from where it is now, every VM its drain's journal says left it."),
    ],
    "preflight": [
        ("preflight_destinations", "Plan moves only to",
         "Hypervisors the VMs may go to, one per line (YAML or JSON list). Empty: every other host of the group."),
        ("preflight_non_live_policy", "VMs that cannot move live",
         "What the drain would do with them: skip (leave running), shutdown or cold (move shut down)."),
        ("preflight_headroom_mib", "Memory to keep free on each destination (MiB)",
         "A destination never gets VMs past its free memory less this."),
        ("preflight_require_all", "Fail unless every VM can move",
         "true: the job fails when the plan leaves a VM on the host."),
    ],
    "migrate_vm": [
        ("migrate_vm_advertise", "Announce the VM's addresses after the move",
         "true: the destination announces the VM's addresses, so the network learns at once where it is now."),
        ("migrate_vm_options", "Migration options",
         "A YAML or JSON dict for the migrate module (strategy, bandwidth_mibps, max_downtime_ms, ...). Empty: defaults."),
    ],
    "rolling_maintenance": [
        ("rolling_maintenance_tasks", "Maintenance tasks file",
         "The tasks to run on each host while it is empty (a path in the project), e.g. an upgrade and a reboot."),
        ("rolling_maintenance_hosts", "Only these hosts",
         "Hosts of the group to maintain, in order, one per line. Empty: the whole group."),
        ("rolling_maintenance_resume", "Resume the unfinished run",
         "true: finish the run an earlier job left unfinished, as the hosts record it."),
        ("rolling_maintenance_abandon", "Abandon this unfinished run",
         "The id of an unfinished run to close before a new run starts (its VMs stay where they are)."),
        ("rolling_maintenance_need_check", "Which hosts need the drain",
         "always: every host; reboot: only the hosts that need a reboot (rolling_maintenance_not_needed: the others)."),
        ("rolling_maintenance_unplaceable", "VMs that cannot move",
         "refuse stops the run before it starts; skip leaves their host out; stop_in_place stops them there and starts them after."),
        ("rolling_maintenance_allow_downtime", "Allow VM downtime",
         "true: the run may stop VMs in place, or maintain a host with VMs on it (the plan lists them); else it is refused."),
    ],
    "tls": [
        ("tls_replace_ca", "Replace the CA the hosts trust",
         "true: put this run's CA on hosts that trust another one (migrations with hosts not yet done fail meanwhile)."),
        ("tls_restart", "Restart libvirt's daemons",
         "true: restart them when anything changed (running VMs keep running); false: the settings apply at their next restart."),
        ("tls_valid_days", "Certificate validity (days)",
         "How long each host's certificate is valid."),
        ("tls_renew_days", "Renew when fewer days are left",
         "A host certificate that expires within this many days is issued again."),
    ],
}


def survey(role):
    with open(os.path.join(TOP, "roles", role, "meta", "argument_specs.yml")) as f:
        main = yaml.safe_load(f)["argument_specs"]["main"]
    options = main.get("options", {})
    own = [question("", n, s) for n, s in PLAYBOOK_VARS.get(role, {}).items()]
    asked = []
    for name, label, text in ASKED.get(role, []):
        asked.append(question(role, name, dict(options[name], label=label, description=text)))
    return {"name": "vmmigration.libvirt.%s" % role, "description": main["short_description"], "spec": own + asked}


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
