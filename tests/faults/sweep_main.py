"""A sweep in its own driver process, on an existing Ray (the fault suite kills it by pid).

    python sweep_main.py SPACE_JSON STORAGE ADDRESS

Runs ``fault_runs.run`` (``fault_runs.make_config``) and exits with the sweep's exit status.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    space_json, storage, address = sys.argv[1:]
    from jola_ray.sweep.runner import run_sweep
    from jola_ray.sweep.space import parse_space

    space = parse_space(json.loads(space_json), "inline", check_registry=False)
    outcome = run_sweep(
        space,
        storage_path=storage,
        address=address,
        run_fn="fault_runs.run",
        make_config="fault_runs.make_config",
    )
    print(json.dumps(outcome.counts()), flush=True)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
