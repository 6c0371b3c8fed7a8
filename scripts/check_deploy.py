"""Cross-checks deploy/: what a schema cannot see.

The schemas say each manifest is well formed; this says they fit together: the
kustomization lists every manifest, the Secret the pods read is the one generated,
the seed is the headless Service's name on the gossip port, the probes and the scrape
annotations use the admin port, the grace period outlasts the drain, the memory limit
follows -m by the documented formula, the ServiceMonitor selects a Service and port
that exist, the compose file agrees, and the Grafana dashboard parses and it and the
alerts (prometheusrule.yaml) use only metric names that docs/OPERATIONS.md documents.
With --binary PATH (a ringcache built with the admin listener), it also starts two
nodes on free 127.0.0.1 ports, forwards a few requests between them and checks that
every metric name the dashboard, the alerts and docs/OPERATIONS.md use is on their
/metrics pages. Run by scripts/check-deploy.sh.
"""

import argparse
import json
import math
import pathlib
import re
import socket
import subprocess
import sys
import time
import urllib.request

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
errors = []


def check(ok, message):
    if not ok:
        errors.append(message)
    return ok


def load_all(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def memory_limit_mib(m):
    """The memory limit for -m MiB: 1.5 x -m + 32 MiB (statefulset.yaml says why)."""
    return math.ceil(1.5 * m + 32)


def args_map(args):
    """--flag=value arguments as a dict of lists (a flag may repeat)."""
    out = {}
    for a in args:
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            out.setdefault(k, []).append(v)
    return out


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def check_kubernetes():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    resources = kustomization.get("resources", [])
    for r in resources:
        check((K8S / r).is_file(), f"kustomization.yaml lists {r}, which does not exist")
    for f in sorted(K8S.glob("*.yaml")):
        if f.name != "kustomization.yaml":
            check(f.name in resources, f"{f.name} is not in kustomization.yaml's resources")

    objects = [o for r in resources if (K8S / r).is_file() for o in load_all(K8S / r)]
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], []).append(o)
    sts = by_kind["StatefulSet"][0]
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    pod = sts["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    container = spec["containers"][0]
    args = args_map(container["args"])
    ports = {p["name"]: p for p in container["ports"]}

    # Secret: generated from gossip-key.env (its committed example), read by the pods.
    generated = {g["name"]: g for g in kustomization.get("secretGenerator", [])}
    for env in container.get("env", []):
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if not ref:
            continue
        gen = generated.get(ref["name"])
        if not check(gen is not None, f"the pods read Secret {ref['name']}, which kustomization.yaml does not generate"):
            continue
        check(gen.get("options", {}).get("disableNameSuffixHash") is True,
              "the gossip Secret must keep its name (a new key must not roll the nodes one by one)")
        for env_file in gen.get("envs", []):
            example = K8S / (env_file + ".example")
            if check(example.is_file(), f"{example.name} (the committed example of {env_file}) is missing"):
                keys = {line.split("=", 1)[0] for line in example.read_text().splitlines()
                        if line and not line.startswith("#")}
                check(ref["key"] in keys, f"{example.name} has no {ref['key']}")
    check(not (K8S / "gossip-key.env").exists() or "gossip-key.env" in (K8S / ".gitignore").read_text(),
          "gossip-key.env must stay out of git")

    # Seeds: the headless Service, listing not-ready pods, on the gossip port (UDP).
    peers = services.get(sts["spec"]["serviceName"])
    if check(peers is not None, "the StatefulSet's serviceName is not a Service here"):
        check(peers["spec"].get("clusterIP") == "None", "the peers Service must be headless")
        check(peers["spec"].get("publishNotReadyAddresses") is True,
              "the peers Service must publish not-ready addresses (they are the seeds)")
        gossip = [p for p in peers["spec"]["ports"] if p["name"] == "gossip"]
        check(gossip and gossip[0]["protocol"] == "UDP", "the peers Service's gossip port must be UDP")
        seeds = args.get("seed", [])
        check(seeds == [f"{peers['metadata']['name']}:{ports['gossip']['containerPort']}"],
              f"--seed should be the peers Service on the gossip port, is {seeds}")
    check(ports["gossip"]["protocol"] == "UDP", "the gossip container port must be UDP")
    check(args.get("gossip-addr") == [f"$(POD_IP):{ports['gossip']['containerPort']}"],
          "--gossip-addr must be the pod IP on the gossip port")
    check(args.get("advertise-addr") == [f"$(POD_IP):{ports['memcached']['containerPort']}"],
          "--advertise-addr must be the pod IP on the memcached port")
    check(args.get("node-name") == ["$(POD_NAME)"], "--node-name must be the pod name")

    # Admin port: probes, annotations, --admin-addr agree.
    admin_port = ports["admin"]["containerPort"]
    check(args.get("admin-addr") == [f"0.0.0.0:{admin_port}"], "--admin-addr must listen on the admin port")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        check(get["path"] == path and get["port"] in ("admin", admin_port), f"{probe} must GET {path} on the admin port")
    annotations = pod["metadata"].get("annotations", {})
    check(annotations.get("prometheus.io/port") == str(admin_port), "prometheus.io/port must be the admin port")

    # Grace period > preStop + drain.
    drain_s = int(args["drain-timeout-ms"][0]) / 1000
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    pre_stop_s = float(pre_stop[-1]) if pre_stop[0].endswith("sleep") else 0
    check(spec["terminationGracePeriodSeconds"] > pre_stop_s + drain_s,
          f"terminationGracePeriodSeconds must exceed preStop {pre_stop_s}s + drain {drain_s}s")

    # Memory limit follows -m.
    m = int(args["memory-limit"][0])
    limit = container["resources"]["limits"]["memory"]
    check(limit == f"{memory_limit_mib(m)}Mi",
          f"memory limit {limit} should be 1.5 x -m + 32 MiB = {memory_limit_mib(m)}Mi for -m {m}")
    check(container["resources"]["requests"]["memory"] == limit, "the memory request should equal the limit")

    # Selectors: every Service, the PDB and the spread constraints select the pods.
    for name, s in services.items():
        check(labels_match(s["spec"]["selector"], pod_labels), f"Service {name} does not select the pods")
    pdb = by_kind["PodDisruptionBudget"][0]
    check(labels_match(pdb["spec"]["selector"]["matchLabels"], pod_labels), "the PDB does not select the pods")
    check(pdb["spec"].get("maxUnavailable") == 1, "the PDB must allow one node away at a time")
    keys = {c["topologyKey"] for c in spec.get("topologySpreadConstraints", [])}
    check("topology.kubernetes.io/zone" in keys, "the pods must spread over zones")

    # ServiceMonitor: a Service and a named port that exist.
    for sm in by_kind.get("ServiceMonitor", []):
        check(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
        selected = [s for s in services.values()
                    if labels_match(sm["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
        check(len(selected) == 1, f"the ServiceMonitor selects {len(selected)} Services, not 1")
        for s in selected:
            check(s["spec"].get("publishNotReadyAddresses") is True,
                  "the ServiceMonitor should scrape the Service that lists not-ready pods")
            job = s["metadata"]["labels"].get(sm["spec"].get("jobLabel", ""), s["metadata"]["name"])
            check(job == "ringcache", f"the ServiceMonitor's job label would be {job}; the alerts expect ringcache")
            names = {p["name"] for p in s["spec"]["ports"]}
            for e in sm["spec"]["endpoints"]:
                check(e["port"] in names, f"ServiceMonitor port {e['port']} is not a port of {s['metadata']['name']}")
                check(e.get("path", "/metrics") == "/metrics", "the ServiceMonitor must scrape /metrics")


def check_compose():
    compose = yaml.safe_load((ROOT / "deploy" / "compose" / "compose.yaml").read_text())
    (name, service), = compose["services"].items()
    command = " ".join(service["entrypoint"])
    check(f"--seed={name}:12211" in command, f"the compose nodes' only seed must be the service name {name}")
    check(command.count("--seed") == 1, "the compose nodes must have exactly one seed")
    env = dict(e.split("=", 1) if "=" in e else (e, None) for e in service["environment"])
    check(env.get("RINGCACHE_GOSSIP_KEY") is None, "the compose file must not hold a gossip key")
    default_m = int(re.search(r":-(\d+)", env["RINGCACHE_MEMORY_MIB"]).group(1))
    default_limit = int(re.search(r":-(\d+)m", service["mem_limit"]).group(1))
    check(default_limit == memory_limit_mib(default_m),
          f"compose mem_limit {default_limit}m should be 1.5 x -m + 32 = {memory_limit_mib(default_m)}m")
    drain_s = int(re.search(r"--drain-timeout-ms=(\d+)", command).group(1)) / 1000
    grace = int(service["stop_grace_period"].rstrip("s"))
    check(grace > drain_s, f"stop_grace_period {grace}s must exceed the drain {drain_s}s")


METRIC = r"\b((?:memcached|ringcache)_[a-z0-9_]+)"


def documented_metrics():
    return set(re.findall(r"`" + METRIC[2:], (ROOT / "docs" / "OPERATIONS.md").read_text()))


def alert_rules():
    rules = yaml.safe_load((K8S / "prometheusrule.yaml").read_text())
    return [r for g in rules["spec"]["groups"] for r in g["rules"]]


def used_metrics():
    """Every metric name the dashboard and the alerts query."""
    names = set()
    for path in (ROOT / "deploy" / "grafana").glob("*.json"):
        for p in json.loads(path.read_text()).get("panels", []):
            for t in p.get("targets", []):
                names.update(re.findall(METRIC, t.get("expr", "")))
    for r in alert_rules():
        names.update(re.findall(METRIC, r["expr"]))
    return names


def check_alerts():
    rules = yaml.safe_load((K8S / "prometheusrule.yaml").read_text())
    check(rules["apiVersion"] == "monitoring.coreos.com/v1" and rules["kind"] == "PrometheusRule",
          "prometheusrule.yaml must be a monitoring.coreos.com/v1 PrometheusRule")
    documented = documented_metrics()
    operations = (ROOT / "docs" / "OPERATIONS.md").read_text()
    names = [r["alert"] for r in alert_rules()]
    check(len(names) == len(set(names)), "alert names repeat")
    for r in alert_rules():
        check(r["expr"].count("(") == r["expr"].count(")"), f"{r['alert']}: unbalanced parentheses")
        check("summary" in r.get("annotations", {}), f"{r['alert']}: no summary")
        check(r["alert"] in operations, f"{r['alert']} is not explained in docs/OPERATIONS.md")
        for name in re.findall(METRIC, r["expr"]):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            check(name in documented or base in documented,
                  f"alert {r['alert']} uses {name}, which docs/OPERATIONS.md does not list")


def check_grafana():
    documented = documented_metrics()
    check(documented, "docs/OPERATIONS.md documents no metric names")
    dashboards = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
    check(dashboards, "no dashboard in deploy/grafana/")
    for path in dashboards:
        try:
            dashboard = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            check(False, f"{path.name} is not JSON: {e}")
            continue
        panels = dashboard.get("panels", [])
        check(panels, f"{path.name} has no panels")
        ids = [p["id"] for p in panels]
        check(len(ids) == len(set(ids)), f"{path.name}: panel ids repeat")
        for p in panels:
            if p.get("type") == "row":
                continue
            targets = p.get("targets", [])
            check(targets, f"{path.name}: panel '{p.get('title')}' has no query")
            for t in targets:
                for name in re.findall(METRIC, t.get("expr", "")):
                    base = re.sub(r"_(bucket|sum|count)$", "", name)
                    check(name in documented or base in documented,
                          f"{path.name}: panel '{p.get('title')}' uses {name}, which docs/OPERATIONS.md does not list")


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except OSError:
        return None, ""


def exposed_names(page):
    """Every series name a /metrics page can hold: sample names, and the names its
    # TYPE lines imply (a family with no samples yet, e.g. a histogram by peer)."""
    names = set()
    for line in page.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            names.add(name)
            if kind == "counter":
                names.add(name + "_total")
            if kind == "histogram":
                names.update(name + s for s in ("_bucket", "_sum", "_count"))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def check_live_metrics(binary):
    """Two nodes, a few forwarded requests, then every metric name in use must exist."""
    nodes = []
    try:
        ports = []
        for name in ("a", "b"):
            p = {"mc": free_port(socket.SOCK_STREAM), "gossip": free_port(socket.SOCK_DGRAM),
                 "admin": free_port(socket.SOCK_STREAM)}
            cmd = [binary, "-p", str(p["mc"]), "-m", "8", "-t", "1", "--node-name", name,
                   "--gossip-addr", f"127.0.0.1:{p['gossip']}", "--admin-addr", f"127.0.0.1:{p['admin']}"]
            if ports:
                cmd += ["--seed", f"127.0.0.1:{ports[0]['gossip']}"]
            nodes.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            ports.append(p)
        deadline = time.monotonic() + 15
        while not all(http_get(p["admin"], "/readyz")[0] == 200 for p in ports):
            if time.monotonic() > deadline:
                check(False, "live metrics: the two nodes were not both ready within 15 s")
                return
            time.sleep(0.2)
        # 40 keys through node b: about half are a's, so b forwards them.
        with socket.create_connection(("127.0.0.1", ports[1]["mc"]), timeout=5) as c:
            for i in range(40):
                c.sendall(f"set key-{i} 0 0 1\r\nx\r\nget key-{i}\r\n".encode())
            reply = b""
            while reply.count(b"END\r\n") < 40 and time.monotonic() < deadline + 5:
                reply += c.recv(65536)
        exposed = set()
        for p in ports:
            status, page = http_get(p["admin"], "/metrics")
            check(status == 200, f"live metrics: GET /metrics answered {status}")
            exposed |= exposed_names(page)
        for name in sorted(documented_metrics() | used_metrics()):
            check(name in exposed, f"live metrics: {name} (dashboard, alerts or docs/OPERATIONS.md) is not on /metrics")
        print(f"live metrics: {len(exposed)} names exposed by two nodes")
    finally:
        for n in nodes:
            n.terminate()
        for n in nodes:
            try:
                n.wait(timeout=30)
            except subprocess.TimeoutExpired:
                n.kill()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", help="a ringcache binary with --admin-addr: also check the live /metrics")
    opts = parser.parse_args()
    steps = [check_kubernetes, check_compose, check_grafana, check_alerts]
    if opts.binary:
        steps.append(lambda: check_live_metrics(opts.binary))
    for step in steps:
        try:
            step()
        except (KeyError, IndexError, TypeError, AttributeError, ValueError, OSError) as e:
            errors.append(f"{getattr(step, '__name__', 'check')}: {e!r}")
    for e in errors:
        print(f"ERROR {e}", file=sys.stderr)
    print(f"{'FAILED' if errors else 'ok'}: deploy cross-checks ({len(errors)} errors)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
