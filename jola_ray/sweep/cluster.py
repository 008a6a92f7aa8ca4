"""Start a local Ray on loopback, or join an existing cluster.

Local (the embedded default): Ray 2.60 takes the machine's network address unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set before it starts; with it, every process binds
to 127.0.0.1. The object store gets a small fixed size (small machines), the dashboard starts
only when asked for, on 127.0.0.1, and the Prometheus metrics are exported on a port only when
asked for (``--metrics-export-port``), reported every 2 s instead of Ray's 10 s.

Ray 2.60 turns on token authentication for a local cluster it starts (``RAY_AUTH_MODE`` unset):
it writes a token to ``~/.ray/auth_token`` (or reads ``RAY_AUTH_TOKEN`` /
``RAY_AUTH_TOKEN_PATH``), and every dashboard API call needs it (``Authorization: Bearer
TOKEN``; the web page asks for it once and keeps it in a cookie). ``dashboard_access`` says
where the token is, for the line the sweep prints under the dashboard's URL.

Existing cluster: ``--address`` or ``RAY_ADDRESS`` (``auto``, ``HOST:6379``, ``ray://...``);
under ``ray job submit`` Ray sets ``RAY_ADDRESS`` itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

LOCAL_OBJECT_STORE_BYTES = 384 << 20
# How often workers send metrics to their node's exporter (Ray's default: 10 s).
LOCAL_METRICS_REPORT_MS = 2000


@dataclass
class ClusterHandle:
    """What ``connect`` did: whether this process started Ray (and must stop it), the dashboard."""

    started_here: bool
    address: str
    dashboard_url: str | None
    num_gpus: float
    metrics_url: str | None = None

    def shutdown(self) -> None:
        import ray

        if self.started_here and ray.is_initialized():
            ray.shutdown()


def bind_local_to_loopback(address: str | None) -> None:
    """Keep a Ray we start ourselves on 127.0.0.1; call before Ray is imported (it reads the
    variable at import time, and the processes it starts inherit it)."""
    if not (address or os.environ.get("RAY_ADDRESS")):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def connect(
    address: str | None = None,
    dashboard: bool = False,
    metrics_export_port: int | None = None,
    **local_init,
) -> ClusterHandle:
    """Join Ray: reuse an initialised one, join ``address``/``RAY_ADDRESS``, or start a local one.

    ``metrics_export_port`` exposes a local Ray's Prometheus metrics on
    ``http://127.0.0.1:PORT/metrics`` (a cluster's nodes export on their own
    ``ray start --metrics-export-port``). ``local_init`` adds ``ray.init`` arguments for a
    local start (tests: ``num_cpus``, ``_system_config``, ...).
    """
    target = address or os.environ.get("RAY_ADDRESS")
    bind_local_to_loopback(target)
    import ray

    if ray.is_initialized():
        ctx = ray.get_runtime_context()
        return ClusterHandle(False, ctx.gcs_address, _running_dashboard_url(), _num_gpus())
    # Trial output (HF Trainer logs, Ray's checkpoint lines) stays in the worker log files
    # (/tmp/ray/session_latest/logs) unless JOLA_RAY_TRIAL_LOGS=1; the terminal shows the
    # sweep's own progress lines, and a failed trial's traceback is in its error.txt.
    log_to_driver = os.environ.get("JOLA_RAY_TRIAL_LOGS", "0") == "1"
    if target:
        ctx = ray.init(address=target, log_to_driver=log_to_driver)
        return ClusterHandle(True, target, _dashboard_url(ctx), _num_gpus())
    kwargs: dict = dict(
        address="local",
        # Ray may have been imported before the variable above was set: name the address too.
        _node_ip_address="127.0.0.1",
        object_store_memory=LOCAL_OBJECT_STORE_BYTES,
        include_dashboard=dashboard,
        configure_logging=True,
        logging_level="WARNING",
        log_to_driver=log_to_driver,
    )
    if dashboard:
        kwargs["dashboard_host"] = "127.0.0.1"
    metrics_url = None
    if metrics_export_port:
        kwargs["_metrics_export_port"] = int(metrics_export_port)
        kwargs["_system_config"] = {"metrics_report_interval_ms": LOCAL_METRICS_REPORT_MS}
        metrics_url = f"http://127.0.0.1:{int(metrics_export_port)}/metrics"
    kwargs.update(local_init)
    ctx = ray.init(**kwargs)
    return ClusterHandle(True, "local", _dashboard_url(ctx), _num_gpus(), metrics_url)


def _running_dashboard_url() -> str | None:
    """The dashboard of the Ray this process already joined (None without one)."""
    try:
        from ray._private.worker import get_dashboard_url

        url = get_dashboard_url()
    except Exception:  # not connected, or a client connection without a local node
        return None
    return _dashboard_url(type("Ctx", (), {"dashboard_url": url})) if url else None


def _dashboard_url(ctx) -> str | None:
    url = getattr(ctx, "dashboard_url", None) if ctx is not None else None
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


GRAFANA_DASHBOARD = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "grafana_dashboard.json"
)


def install_grafana_dashboard() -> str | None:
    """Copy the project's Grafana dashboard (the trial gauges) beside Ray's own in the
    session's provisioning folder (``SESSION/metrics/grafana/dashboards``, written by Ray's
    dashboard when it starts); its path, or None when Ray made no such folder (no dashboard)."""
    import shutil

    try:
        from ray._private.worker import _global_node

        folder = os.path.join(
            _global_node.get_session_dir_path(), "metrics", "grafana", "dashboards"
        )
    except Exception:  # not a local node of this process
        return None
    if not os.path.isdir(folder):
        return None
    target = os.path.join(folder, "jola_ray_trials_grafana_dashboard.json")
    shutil.copyfile(GRAFANA_DASHBOARD, target)
    return target


def token_auth_enabled() -> bool:
    """Whether the Ray this process joined asks for a token (Ray 2.60's token authentication)."""
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled
    except ImportError:  # a Ray without token authentication
        return False
    return bool(is_token_auth_enabled())


def token_location() -> str:
    """Where Ray reads its token from: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "the RAY_AUTH_TOKEN environment variable"
    return os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")


def read_token() -> str | None:
    """The token a dashboard API client sends (None when there is none to be found)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    try:
        with open(token_location(), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def dashboard_access(url: str) -> list[str]:
    """The lines printed under the dashboard's URL: how to authenticate, or that no token is
    needed."""
    lines = [f"Ray dashboard: {url}"]
    if not token_auth_enabled():
        lines.append("  token authentication is off (RAY_AUTH_MODE=disabled): no token needed")
        return lines
    lines += [
        f"  token authentication is on: the token is in {token_location()} "
        "(print it with `ray get-auth-token`)",
        "  the page asks for it once; API calls send `Authorization: Bearer <token>`, e.g.",
        f'  curl -H "Authorization: Bearer $(ray get-auth-token)" {url}/api/v0/actors',
        "  (RAY_AUTH_MODE=disabled before the sweep turns it off; only on a trusted machine)",
    ]
    return lines


def _num_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


def trial_resources(requested: dict[str, float], num_gpus: float) -> tuple[dict[str, float], str]:
    """The resources each trial asks for, and a note when GPUs were dropped (CPU-only cluster)."""
    cpu, gpu = requested.get("cpu", 1.0), requested.get("gpu", 0.0)
    if gpu > 0 and num_gpus <= 0:
        note = (
            f"the cluster has no GPU: trials run CPU-only ({cpu:g} CPU each; gpu {gpu:g} ignored)"
        )
        return {"cpu": cpu, "gpu": 0.0}, note
    return {"cpu": cpu, "gpu": gpu}, ""
