#!/usr/bin/env python3
"""Fails unless every alert in alerts.yml has a promtool unit test in alerts_test.yml that
expects it to fire and one that expects it to stay quiet.

promtool itself only runs the tests that exist; an alert added without a test would pass
`promtool test rules` unnoticed. `make ops-check` runs this after promtool.

  python3 deployments/prometheus/check_alert_tests.py
"""
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    with open(os.path.join(HERE, "alerts.yml")) as f:
        alerts = [r["alert"] for g in yaml.safe_load(f)["groups"] for r in g["rules"] if "alert" in r]
    with open(os.path.join(HERE, "alerts_test.yml")) as f:
        tests = yaml.safe_load(f)["tests"]
    fires, quiet = set(), set()
    for t in tests:
        for c in t.get("alert_rule_test", []):
            (fires if c.get("exp_alerts") else quiet).add(c["alertname"])
    problems = []
    for a in alerts:
        if a not in fires:
            problems.append(f"{a}: no test in alerts_test.yml expects it to fire "
                            f"(add an alert_rule_test with exp_alerts for it)")
        if a not in quiet:
            problems.append(f"{a}: no test in alerts_test.yml expects it to stay quiet "
                            f"(add an alert_rule_test with exp_alerts: [] below its threshold)")
    for a in sorted((fires | quiet) - set(alerts)):
        problems.append(f"{a}: tested in alerts_test.yml but not defined in alerts.yml")
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(f"every alert of alerts.yml ({len(alerts)}) has tests that expect it to fire and to stay quiet")


if __name__ == "__main__":
    main()
