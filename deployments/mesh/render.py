#!/usr/bin/env python3
"""Writes the Envoy config that each mesh example yields, for `envoy --mode validate`.

istiod and Envoy Gateway are not run here. Instead this script starts from a minimal stand-in
for what each control plane generates for a TCP service on port 1433 (an outbound listener
whose filter chain is one tcp_proxy, and its clusters) and applies the patches exactly as they
are written in istio-envoyfilter.yaml (INSERT_BEFORE / MERGE / BOOTSTRAP MERGE) and
envoy-gateway.yaml (EnvoyProxy bootstrap Merge, EnvoyPatchPolicy JSON Patch "add"). The result
is a bootstrap with the xDS resources inlined as static_resources, which validate.sh runs
through `envoy --mode validate` with the module loaded (so tdspool's own config validation runs
too).

  python3 deployments/mesh/render.py OUTDIR   # writes OUTDIR/istio-sidecar.json, OUTDIR/envoy-gateway.json
"""
import copy
import json
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
TCP_PROXY = "envoy.filters.network.tcp_proxy"
TDSPOOL = "envoy.filters.network.dynamic_modules"
ADMIN = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}}


def cluster(name, host):
    return {"name": name, "type": "STRICT_DNS", "connect_timeout": "2s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": host, "port_value": 1433}}}}]}]}}


def tcp_listener(name, stat_prefix, cluster_name):
    return {"name": name, "address": {"socket_address": {"address": "0.0.0.0", "port_value": 1433}},
            "filter_chains": [{"filters": [{"name": TCP_PROXY, "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": stat_prefix, "cluster": cluster_name}}]}]}


def merge(dst, src):
    """Protobuf-style merge: messages merge field by field, repeated fields append."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        elif isinstance(v, list) and isinstance(dst.get(k), list):
            dst[k].extend(copy.deepcopy(v))
        else:
            dst[k] = copy.deepcopy(v)


def docs(name):
    with open(os.path.join(HERE, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def istio():
    services = [f"sql-bucket-00{i}.databases.svc.cluster.local" for i in (1, 2, 3)]
    clusters = [cluster(f"outbound|1433||{s}", s) for s in services]
    # istiod's outbound listener for one TCP service VIP on 1433 (the client dialled bucket-001).
    listener = tcp_listener("10.96.0.11_1433", clusters[0]["name"], clusters[0]["name"])
    boot = {"admin": ADMIN, "static_resources": {"listeners": [listener], "clusters": clusters}}
    (ef,) = [d for d in docs("istio-envoyfilter.yaml") if d["kind"] == "EnvoyFilter"]
    for p in ef["spec"]["configPatches"]:
        op, value = p["patch"]["operation"], p["patch"]["value"]
        if p["applyTo"] == "BOOTSTRAP":
            merge(boot, value)
            continue
        m = p["match"]
        assert p["applyTo"] == "NETWORK_FILTER" and m["context"] == "SIDECAR_OUTBOUND", p
        assert m["listener"]["portNumber"] == 1433
        want = m["listener"]["filterChain"]["filter"]["name"]
        filters = listener["filter_chains"][0]["filters"]
        i = next(i for i, f in enumerate(filters) if f["name"] == want)
        if op == "INSERT_BEFORE":
            filters.insert(i, copy.deepcopy(value))
        elif op == "MERGE":
            merge(filters[i], value)
        else:
            raise SystemExit(f"render.py does not know patch operation {op}")
    return boot, listener


def pointer_add(doc, path, value):
    """RFC 6902 "add" at a JSON pointer (array index inserts, object key sets)."""
    *parents, last = path.lstrip("/").split("/")
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    if isinstance(doc, list):
        doc.insert(len(doc) if last == "-" else int(last), copy.deepcopy(value))
    else:
        doc[last] = copy.deepcopy(value)


def envoy_gateway():
    d = docs("envoy-gateway.yaml")
    (proxy,) = [x for x in d if x["kind"] == "EnvoyProxy"]
    (policy,) = [x for x in d if x["kind"] == "EnvoyPatchPolicy"]
    (gw,) = [x for x in d if x["kind"] == "Gateway"]
    (route,) = [x for x in d if x["kind"] == "TCPRoute"]
    ns = gw["metadata"]["namespace"]
    backend = route["spec"]["rules"][0]["backendRefs"][0]["name"]
    route_cluster = f"tcproute/{ns}/{route['metadata']['name']}/rule/0"
    listener = tcp_listener(f"{ns}/{gw['metadata']['name']}/{gw['spec']['listeners'][0]['name']}",
                            "tcp-1433", route_cluster)
    boot = {"admin": ADMIN, "static_resources": {
        "listeners": [listener], "clusters": [cluster(route_cluster, f"{backend}.{ns}.svc.cluster.local")]}}
    merge(boot, yaml.safe_load(proxy["spec"]["bootstrap"]["value"]))
    for p in policy["spec"]["jsonPatches"]:
        assert p["type"] == "type.googleapis.com/envoy.config.listener.v3.Listener", p["type"]
        assert p["name"] == listener["name"], f"patch names listener {p['name']}, the Gateway's is {listener['name']}"
        assert p["operation"]["op"] == "add", p["operation"]
        pointer_add(listener, p["operation"]["path"], p["operation"]["value"])
    return boot, listener


def check(name, listener):
    """The patches must leave tdspool first and a tcp_proxy that reads early data."""
    filters = listener["filter_chains"][0]["filters"]
    names = [f["name"] for f in filters]
    if names != [TDSPOOL, TCP_PROXY]:
        raise SystemExit(f"{name}: filter chain is {names}, want tdspool then tcp_proxy")
    tcp = filters[1]["typed_config"]
    if not tcp.get("max_early_data_bytes") or tcp.get("idle_timeout") != "0s":
        raise SystemExit(f"{name}: tcp_proxy lacks max_early_data_bytes or idle_timeout: 0s: {tcp}")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, render in (("istio-sidecar", istio), ("envoy-gateway", envoy_gateway)):
        boot, listener = render()
        check(name, listener)
        path = os.path.join(out, name + ".json")
        with open(path, "w") as f:
            json.dump(boot, f, indent=1)
        print(f"{path}: listener {listener['name']}: tdspool → tcp_proxy")


if __name__ == "__main__":
    main()
