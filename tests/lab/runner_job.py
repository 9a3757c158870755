"""Run one playbook as AWX runs a job: through ansible-runner, with a private data directory and the extra vars a
survey sends. Run inside the lab's controller namespace (vmmlab.runner); prints one JSON object: status, rc, the job
events (event, task, host, stdout), the artifact directory and the job's whole stdout."""
import json
import sys

import ansible_runner


def main():
    args = json.loads(sys.argv[1])
    r = ansible_runner.run(private_data_dir=args["dir"], playbook=args["playbook"], inventory=args["inventory"],
                           extravars=args["extravars"], cmdline="--check" if args.get("check") else None,
                           envvars=args["envvars"], ident=args["ident"], quiet=True)
    events = []
    for e in r.events:
        data = e.get("event_data") or {}
        events.append({"event": e.get("event"), "task": data.get("task"), "host": data.get("host"),
                       "stdout": e.get("stdout") or "", "role": data.get("role"),
                       # (a task's own time on a host, for the benchmarks: ansible-runner's start and end)
                       "start": data.get("start"), "end": data.get("end"), "duration": data.get("duration")})
    with open(r.config.artifact_dir + "/stdout") as f:
        stdout = f.read()
    print(json.dumps({"status": r.status, "rc": r.rc, "events": events, "artifact_dir": r.config.artifact_dir,
                      "stdout": stdout}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
