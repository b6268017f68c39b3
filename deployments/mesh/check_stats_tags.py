#!/usr/bin/env python3
"""Checks that an Envoy config's stats_tags turn tdspool's stat names into Prometheus labels.

Applies each stats_tags regex the way Envoy's tag extractor does (the first capture group is
cut out of the name; the tag's value is the second group, else the first) to tdspool names with
and without a per-listener stat_prefix, and fails unless both come out as one metric name with
labels listener and bucket.

  python3 check_stats_tags.py CONFIG.json|CONFIG.yaml ...
"""
import json
import re
import sys

import yaml

CASES = {
    "tdspool.listener.tds.bucket.bucket-001.rx_bytes_total":
        ("tdspool.bucket.rx_bytes_total", {"listener": "tds", "bucket": "bucket-001"}),
    "tdspool.bucket.bucket-001.rx_bytes_total":
        ("tdspool.bucket.rx_bytes_total", {"bucket": "bucket-001"}),
    "tdspool.listener.tds.drain_sessions_closed_total":
        ("tdspool.drain_sessions_closed_total", {"listener": "tds"}),
    "tdspool.connections_active": ("tdspool.connections_active", {}),
}


def extract(tags, name):
    found = {}
    for t in tags:
        m = re.search(t["regex"], name)
        if not m:
            continue
        found[t["tag_name"]] = m.group(2) if m.re.groups >= 2 else m.group(1)
        name = name[:m.start(1)] + name[m.end(1):]
    return name, found


def main(paths):
    bad = 0
    for path in paths:
        with open(path) as f:
            cfg = json.load(f) if path.endswith(".json") else yaml.safe_load(f)
        tags = cfg.get("stats_config", {}).get("stats_tags", [])
        for stat, want in CASES.items():
            got = extract(tags, stat)
            if got != want:
                print(f"{path}: {stat} -> {got}, want {want}", file=sys.stderr)
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
