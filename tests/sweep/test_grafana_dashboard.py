"""The shipped Grafana dashboard queries only the gauges and tags the trials export."""

from __future__ import annotations

import json
import re

from jola_ray.sweep.cluster import GRAFANA_DASHBOARD
from jola_ray.sweep.trainable import GAUGE_TAGS, GAUGES


def test_dashboard_queries_the_exported_gauges_by_their_tags():
    with open(GRAFANA_DASHBOARD) as f:
        dash = json.load(f)
    exported = {"ray_" + name for name in GAUGES.values()}
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    queried = {m for e in exprs for m in re.findall(r"\bray_[a-z_]+", e)}
    assert queried <= exported, queried - exported
    assert exported - {"ray_jola_trial_epoch"} <= queried  # every metric has a panel
    labels = {lab for e in exprs for lab in re.findall(r"([a-z_]+)=~", e)}
    labels |= {lab for e in exprs for lab in re.findall(r"by \(([a-z_]+)\)", e)}
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    for v in variables.values():
        if v["type"] == "query":
            labels.add(re.search(r", ([a-z_]+)\)$", v["definition"]).group(1))
    assert labels <= set(GAUGE_TAGS), labels - set(GAUGE_TAGS)
    assert {"datasource", "experiment", "task", "method", "seed"} <= set(variables)
    for p in dash["panels"]:
        for t in p["targets"]:
            for var in re.findall(r"\$([a-z_]+)", t["expr"]):
                assert var in variables
