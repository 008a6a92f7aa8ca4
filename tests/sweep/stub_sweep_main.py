"""Run a stub sweep in its own process (tests that need their own driver or their own cluster).

    python stub_sweep_main.py SPACE_JSON STORAGE RUN_FN [--address ADDR | --two-nodes]

``--two-nodes`` starts a two-node Ray cluster on loopback (ray.cluster_utils.Cluster, one CPU
per node). Prints one JSON line ``{"counts": ..., "node_ids": [...]}`` at the end.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def main() -> None:
    space_json, storage, run_fn, *rest = sys.argv[1:]
    import ray

    from jola_ray.sweep.runner import run_sweep
    from jola_ray.sweep.space import parse_space

    cluster = None
    address = None
    reuse = None
    if rest and rest[0] == "--two-nodes":
        from ray.cluster_utils import Cluster

        node = {"num_cpus": 1, "object_store_memory": 96 << 20}
        cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        reuse = False  # a fresh worker per trial: two trials at once, one per node
    elif rest and rest[0] == "--address":
        address = rest[1]
    space = parse_space(json.loads(space_json), "inline", check_registry=False)
    outcome = run_sweep(
        space,
        storage_path=storage,
        address=address,
        run_fn=run_fn,
        make_config="sweep_stubs.identity",
        reuse_actors=reuse,
    )
    node_ids = (
        sorted(n["NodeID"] for n in ray.nodes() if n["Alive"]) if ray.is_initialized() else []
    )
    print(json.dumps({"counts": outcome.counts(), "node_ids": node_ids}), flush=True)
    if cluster is not None:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
