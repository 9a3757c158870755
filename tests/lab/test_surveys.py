"""Each shipped AWX survey launched as AWX launches a job: ansible-runner, a private data directory, the job
template's extra variables (here: the lab's own directories), then what the survey sends (every question's default,
plus the answers). With the answers a survey requires, in
check mode, each playbook plans (nothing moves); without them, the job fails before any play on a host and
names the variable to set - never a green job that did nothing."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position
from test_migrate import where  # noqa: E402  pylint: disable=wrong-import-position
from test_security import role_vars  # noqa: E402  pylint: disable=wrong-import-position

SURVEYS = os.path.join(L.TOP, "docs", "awx", "surveys")


def survey_vars(name, answers, template=None):
    """The extra vars AWX sends for survey NAME: the job template's extra variables TEMPLATE, each question's
    default (a blank one is not sent), then the ANSWERS."""
    with open(os.path.join(SURVEYS, name + ".json")) as f:
        spec = json.load(f)["spec"]
    out = dict(template or {})
    out.update((q["variable"], q["default"]) for q in spec if q.get("default") not in ("", None))
    unknown = sorted(set(answers) - set(q["variable"] for q in spec))
    assert not unknown, "%s: the survey has no question for %s" % (name, unknown)
    out.update(answers)
    return out


def answers(lab_dir):  # pylint: disable=unused-argument
    """What an operator answers in the survey."""
    return {"evacuate_host": {"source": "h1"}, "preflight": {"source": "h1"},
            "migrate_vm": {"vm": "sv1", "source": "h1", "destination": "h2"},
            "rolling_maintenance": {}, "tls": {}}


def template_vars(lab_dir):
    """The job templates' extra variables: the lab's own directories instead of the machine's (the lab never writes
    outside its state)."""
    return {
        "evacuate_host": {"evacuate_host_state_dir": os.path.join(lab_dir, "state"),
                          "evacuate_host_report_dir": os.path.join(lab_dir, "reports")},
        "preflight": {"preflight_plan_dir": os.path.join(lab_dir, "plans")},
        "migrate_vm": {},
        "rolling_maintenance": {"rolling_maintenance_state_dir": os.path.join(lab_dir, "rolling-state"),
                                "rolling_maintenance_report_dir": os.path.join(lab_dir, "rolling-reports")},
        # (a CA directory of its own: a first run, whatever CA other tests made)
        "tls": dict(dict((k, v) for k, v in role_vars().items() if k not in ("tls_become", "tls_restart")),
                    tls_ca_dir=os.path.join(lab_dir, "tls-ca")),
    }


# what each playbook prints when it plans, in check mode
PLANNED = {
    "evacuate_host": "sv1",
    "preflight": "sv1",
    "migrate_vm": "sv1",
    "rolling_maintenance": "h1",
    "tls": "check mode: no CA in",
}


@pytest.fixture(scope="module")
def guest(lab):  # pylint: disable=unused-argument
    g = L.define_guest("sv1", "h1", disk="nbd", memory_mib=128)
    L.wait_guest(g["ip"])
    yield g
    L.remove_guest("sv1")


@pytest.mark.parametrize("name", sorted(PLANNED))
def test_each_survey_plans_in_check_mode_with_its_required_answers(lab, guest, figures, name):  # pylint: disable=unused-argument
    lab_dir = L.state_path("surveys")
    os.makedirs(lab_dir, exist_ok=True)
    extra = survey_vars(name, answers(lab_dir)[name], template_vars(lab_dir)[name])
    job = L.runner(os.path.join(L.TOP, "playbooks", name + ".yml"), extra, "survey-" + name, check=True)
    assert job["status"] == "successful" and job["rc"] == 0, job["stdout"][-6000:]
    hosts = set(e["host"] for e in job["events"] if e["event"] == "runner_on_ok" and e["host"] != "localhost")
    assert hosts, "%s: no task ran on a hypervisor - a no-op job: %s" % (name, job["stdout"][-3000:])
    assert PLANNED[name] in job["stdout"], job["stdout"][-3000:]
    assert where(lab, "sv1") == {"h1": "running"}        # check mode: nothing moved
    figures.setdefault("surveys_check_mode", {})[name] = {"questions": len(extra), "hosts": sorted(hosts)}


@pytest.mark.parametrize("name,missing", [("evacuate_host", "source"), ("preflight", "source"),
                                          ("migrate_vm", "source")])
def test_a_survey_without_its_required_answers_is_refused_naming_them(lab, name, missing):  # pylint: disable=unused-argument
    lab_dir = L.state_path("surveys")
    given = dict((k, v) for k, v in answers(lab_dir)[name].items() if k != missing)
    job = L.runner(os.path.join(L.TOP, "playbooks", name + ".yml"),
                   survey_vars(name, given, template_vars(lab_dir)[name]), "survey-no-" + name, check=True)
    assert job["status"] == "failed" and job["rc"] != 0, job["stdout"][-3000:]
    assert "set -e %s=HOST" % missing in " ".join(job["stdout"].split()), job["stdout"][-3000:]
    assert not [e for e in job["events"] if e["host"] not in (None, "localhost")], job["stdout"][-3000:]
