"""Run a stub sweep with ``--dashboard`` and query the dashboard's API (its own driver process).

    python dashboard_main.py STORAGE

Prints the sweep's own lines, then one JSON line: the dashboard URL, the status of an API call
without the token and with it, and the repr names of the trial actors the API lists.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request


def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def main() -> None:
    storage = sys.argv[1]
    from sweep_stubs import stub_space

    from jola_ray.sweep.cluster import connect, install_grafana_dashboard, read_token
    from jola_ray.sweep.runner import run_sweep
    from jola_ray.sweep.space import parse_space

    space = stub_space(name="dash", tasks=["demo_a"])
    handle = connect(dashboard=True, num_cpus=2, object_store_memory=128 << 20)
    said: list[str] = []
    outcome = run_sweep(
        parse_space(space, "inline", check_registry=False),
        storage_path=storage,
        dashboard=True,
        run_fn="sweep_stubs.scaled_run",
        make_config="sweep_stubs.identity",
        reuse_actors=False,  # one actor per trial, each with its trial's repr
        say=said.append,
    )
    url = handle.dashboard_url
    grafana = install_grafana_dashboard()
    api = f"{url}/api/v0/actors?detail=1&limit=1000"
    no_token, _ = get(api)
    status, body = get(api, read_token())
    actors = json.loads(body)["data"]["result"]["result"] if status == 200 else []
    reprs = sorted(
        a.get("repr_name") or "" for a in actors if "jola_trial" in (a.get("repr_name") or "")
    )
    print("\n".join(said))
    print(f"GET {api} without a token: {no_token}; with the token: {status}")
    for name in reprs:
        print(f"  actor repr_name: {name}")
    print(
        json.dumps(
            {
                "url": url,
                "said": said,
                "no_token": no_token,
                "with_token": status,
                "reprs": reprs,
                "trial_dirs": sorted(outcome.statuses),
                "grafana": grafana,
            }
        )
    )
    handle.shutdown()


if __name__ == "__main__":
    main()
