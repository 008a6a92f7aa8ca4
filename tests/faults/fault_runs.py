"""The real training run with faults injected from a plan (imported by name in Ray workers).

``make_config(flat)`` takes ``fault_plan`` (a JSON file) out of the flat dict before building
the RunConfig, so a planned sweep and an undisturbed run share every setting. The plan maps a
configuration name to its fault:

- ``{"block_after": 2}``: after epoch 2's checkpoint is in storage, wait (the first time only)
  until the file ``release`` appears beside the plan: the test kills the driver meanwhile and
  damages the checkpoints of the waiting trials;
- ``{"sigkill_after": 1}``: after epoch 1, the first time, SIGKILL this worker by its pid;
- ``{"permanent": true}``: every attempt raises the non-finite-loss error (counted in
  ``attempts-<config>`` beside the plan);
- ``{"disk_full_after": 1}``: once the file ``arm_disk`` exists, the storage is full from the
  checkpoint after epoch 1 on, until the file ``disk_full`` is removed.

``run(cfg, report, resume_from)`` is ``jola_ray.train.run`` with those faults in its report.
"""

from __future__ import annotations

import json
import os
import signal
import time

PLAN: dict = {}  # set by make_config in this worker, read by run


def make_config(flat: dict):
    from jola_ray.train import RunConfig

    flat = dict(flat)
    plan_file = flat.pop("fault_plan", None)
    PLAN.clear()
    if plan_file:
        with open(plan_file) as fh:
            PLAN.update(json.load(fh))
        PLAN["_dir"] = os.path.dirname(plan_file)
    return RunConfig.from_dict(flat)


def _once(name: str) -> bool:
    """True the first time ``name`` is asked for (a file beside the plan remembers it)."""
    path = os.path.join(PLAN["_dir"], f"done-{name}")
    if os.path.exists(path):
        return False
    open(path, "w").close()
    return True


def run(cfg, report, resume_from=None):
    from jola_ray.errors import TrainingError
    from jola_ray.train import run as real_run

    # the trial directory is task-s<seed>-<method>-<config>-<id> (sweep.runner.trial_dirname)
    name = os.path.basename(os.path.dirname(cfg.output_dir)).split("-")[3]
    fault = PLAN.get(name) or {}
    if not fault:
        return real_run(cfg, report=report, resume_from=resume_from)
    here = PLAN["_dir"]
    if fault.get("permanent"):
        with open(os.path.join(here, f"attempts-{name}"), "a") as fh:
            fh.write("attempt\n")
        raise TrainingError("non-finite training loss at step 3 (epoch 1.00): task loss nan")
    if "disk_full_after" in fault and os.path.exists(os.path.join(here, "arm_disk")):
        from sweep_stubs import _install_full_disk

        _install_full_disk(os.path.join(here, "disk_full"))

    def faulty_report(metrics, checkpoint_dir):
        epoch = metrics.get("epoch")
        full_at = fault.get("disk_full_after")
        armed = os.path.exists(os.path.join(here, "arm_disk"))
        filling = full_at is not None and epoch == full_at + 1 and armed
        if filling and metrics["run_status"] == "running" and _once(f"{name}-disk"):
            open(os.path.join(here, "disk_full"), "w").close()
        report(metrics, checkpoint_dir)
        if metrics["run_status"] != "running":
            return
        if epoch == fault.get("sigkill_after") and _once(f"{name}-sigkill"):
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies like an OOM-killed one
        if epoch == fault.get("block_after") and _once(f"{name}-block"):
            open(os.path.join(here, f"blocked-{name}"), "w").close()
            deadline = time.monotonic() + 300
            while not os.path.exists(os.path.join(here, "release")):
                if time.monotonic() > deadline:
                    raise RuntimeError("the fault suite never released this trial")
                time.sleep(0.1)

    return real_run(cfg, report=faulty_report, resume_from=resume_from)
