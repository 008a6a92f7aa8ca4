"""Start a local Ray on loopback, or join an existing cluster.

Local (the embedded default): Ray 2.60 takes the machine's network address unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set before it starts; with it, every process binds
to 127.0.0.1. The object store gets a small fixed size (small machines), the dashboard starts
only when asked for, on 127.0.0.1.

Existing cluster: ``--address`` or ``RAY_ADDRESS`` (``auto``, ``HOST:6379``, ``ray://...``);
under ``ray job submit`` Ray sets ``RAY_ADDRESS`` itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

LOCAL_OBJECT_STORE_BYTES = 384 << 20


@dataclass
class ClusterHandle:
    """What ``connect`` did: whether this process started Ray (and must stop it), the dashboard."""

    started_here: bool
    address: str
    dashboard_url: str | None
    num_gpus: float

    def shutdown(self) -> None:
        import ray

        if self.started_here and ray.is_initialized():
            ray.shutdown()


def bind_local_to_loopback(address: str | None) -> None:
    """Keep a Ray we start ourselves on 127.0.0.1; call before Ray is imported (it reads the
    variable at import time, and the processes it starts inherit it)."""
    if not (address or os.environ.get("RAY_ADDRESS")):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def connect(address: str | None = None, dashboard: bool = False, **local_init) -> ClusterHandle:
    """Join Ray: reuse an initialised one, join ``address``/``RAY_ADDRESS``, or start a local one.

    ``local_init`` adds ``ray.init`` arguments for a local start (tests: ``num_cpus``,
    ``_metrics_export_port``, ...).
    """
    target = address or os.environ.get("RAY_ADDRESS")
    bind_local_to_loopback(target)
    import ray

    if ray.is_initialized():
        ctx = ray.get_runtime_context()
        return ClusterHandle(False, ctx.gcs_address, _dashboard_url(None), _num_gpus())
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
    kwargs.update(local_init)
    ctx = ray.init(**kwargs)
    return ClusterHandle(True, "local", _dashboard_url(ctx), _num_gpus())


def _dashboard_url(ctx) -> str | None:
    url = getattr(ctx, "dashboard_url", None) if ctx is not None else None
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


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
