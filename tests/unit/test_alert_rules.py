"""The example Prometheus rules in deploy/ use only metrics the composer exports."""

from __future__ import annotations

import re

import yaml

from xtm_composer.telemetry import Metrics

from ..paths import PROJECT_ROOT


def test_every_metric_named_in_the_alert_rules_is_exported():
    rules = yaml.safe_load((PROJECT_ROOT / "deploy" / "prometheus" / "xtm-composer-rules.yaml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = {name for expr in expressions for name in re.findall(r"\bxtm_composer_[a-z_]+", expr)}
    exported = set()
    for metric in Metrics().registry.collect():
        exported.add(metric.name)
        if metric.type == "counter":  # exposed with the _total suffix
            exported.add(f"{metric.name}_total")
    assert used and used <= exported, used - exported
