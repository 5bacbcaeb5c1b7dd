"""The page's "How it is doing" figures across replicas, against a real Prometheus
(`--prometheus-url`, inference-server/src/monitor/prometheus.rs).

Four Iris servers on loopback stand for the pods a PodMonitor scrapes: `a` and `b`, the
primary replicas of model `iris` in namespace `mon`; `canary`, a canary of the same model in
the same namespace (`--variant canary`); `elsewhere`, a model named `iris` in namespace
`other`. A Prometheus of their own scrapes the four `/metrics` every second from a
`static_configs` job. The server's queries select `namespace`, `model` and `variant`: `model`
and `variant` are on every series the server exports, `namespace` is the label a PodMonitor
(or the cluster's kubernetes_sd relabelling) adds; here each static group carries it under
`labels:`, and each server gets the same namespace as `MODELSHIP_NAMESPACE`, as the downward
API gives it in a pod. `a` and `canary` have `--prometheus-url`, `b` has not.

The figures Prometheus sums from counters at one instant (predictions by class, feedback
rows, correct rows, items by result, ready replicas) must equal the sums over `a` and `b`
exactly, and leave out the canary and the other namespace; the traffic chart is `rate(...[1m])`
per 10 s and drift `increase(...[10m])`, which Prometheus extrapolates past the last sample by up
to a scrape interval: they may read up to 20 % over the sums here, never under.

Why here and not in tests/monitoring: these are loopback processes, no cluster, so the test
runs in seconds with the server suite (the cluster's own Prometheus test stays in
tests/monitoring). It needs the Prometheus binary that suite builds: `make test-server` passes
`MODELSHIP_PROMETHEUS_BIN` from `hack/cluster/cluster.sh prometheus-dir` (built once, cached;
docs/testing.md has the cost).
"""

import os
import subprocess
import time

import pytest
import requests

from conftest import FLOWERS, free_port
from monitor_helpers import infer, start_iris
from test_web_page import browser, page  # noqa: F401  (the headless Chromium fixtures)

PROMETHEUS_BIN = os.environ.get("MODELSHIP_PROMETHEUS_BIN", "")
SCRAPE_S = 1


def start(name, namespace, *args):
    """An Iris server as the pod `name` of `namespace` would be (downward-API variables)."""
    env = {"MODELSHIP_NAMESPACE": namespace, "MODELSHIP_POD_NAME": name, "MODELSHIP_POD_IP": "127.0.0.1"}
    return start_iris(*args, env=env)


class Prometheus:
    """A Prometheus on 127.0.0.1:`port` scraping `groups` ({namespace: [server]})."""

    def __init__(self, port, groups, workdir):
        if not PROMETHEUS_BIN or not os.path.exists(PROMETHEUS_BIN):
            raise RuntimeError(
                f"MODELSHIP_PROMETHEUS_BIN={PROMETHEUS_BIN!r} is not a Prometheus binary "
                "(make test-server sets it from `hack/cluster/cluster.sh prometheus-dir`)")
        self.url = f"http://127.0.0.1:{port}"
        lines = [
            "global:",
            f"  scrape_interval: {SCRAPE_S}s",
            f"  scrape_timeout: {SCRAPE_S}s",
            "scrape_configs:",
            "  - job_name: modelship-models",
            "    static_configs:",
        ]
        for namespace, servers in groups.items():
            targets = ", ".join(s.host_port for s in servers)
            lines += [f"      - targets: [{targets}]", f"        labels: {{namespace: {namespace}}}"]
        config = workdir / "prometheus.yml"
        config.write_text("\n".join(lines) + "\n")
        self.log = open(workdir / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            [PROMETHEUS_BIN, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.expected_targets = sum(len(s) for s in groups.values())
        eventually(lambda: self.up() == self.expected_targets, 60,
                   lambda: f"Prometheus did not scrape all {self.expected_targets} servers: "
                           f"{self.up()} up; log {self.log.name}")
        self.up_at = time.time()

    def query(self, q):
        r = requests.get(f"{self.url}/api/v1/query", params={"query": q}, timeout=5)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def up(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"Prometheus exited with {self.proc.returncode}: {open(self.log.name).read()}")
        try:
            return len(self.query('up{job="modelship-models"} == 1'))
        except requests.RequestException:
            return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def eventually(check, timeout, message):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(message())


def summary(server):
    r = requests.get(f"{server.url}/v2/models/iris/monitor", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def serve(server, flowers):
    """One inference per flower index; the ids in order."""
    session = requests.Session()
    return [infer(session, server, [FLOWERS[i]]).headers["x-modelship-inference-id"] for i in flowers]


def feedback(server, ids, flowers, wrong):
    """Truth for each id: its flower's class, except for the first `wrong` ids (the next class)."""
    items = [{"id": i, "truth": [(f + (1 if n < wrong else 0)) % 3]} for n, (i, f) in enumerate(zip(ids, flowers))]
    r = requests.post(f"{server.url}/v2/models/iris/feedback", json={"items": items}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def classes(s):
    return {c["class"]: c["predicted"] for c in s["classes"]}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    """The four servers and their Prometheus, traffic and feedback sent, the scrapes caught up."""
    work = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    servers = {
        "a": start("iris-a", "mon", "--prometheus-url", url),
        "b": start("iris-b", "mon"),
        "canary": start("iris-canary", "mon", "--variant", "canary", "--prometheus-url", url),
        "elsewhere": start("iris-other", "other"),
    }
    prom = None
    try:
        s = servers
        prom = Prometheus(port, {"mon": [s["a"], s["b"], s["canary"]], "other": [s["elsewhere"]]}, work)
        # Every counter was scraped at 0 before the traffic, as in a cluster whose pods are
        # scraped before they get any.
        before = summary(s["a"])
        t0 = time.time()
        # a: 100 of each class; b: 120 setosa, 80 virginica; the canary and the other
        # namespace, which the primary's figures must leave out: 50 and 70 versicolor.
        flowers = {
            "a": [i % 3 for i in range(300)],
            "b": [0] * 120 + [2] * 80,
            "canary": [1] * 50,
            "elsewhere": [1] * 70,
        }
        ids = {k: serve(s[k], f) for k, f in flowers.items()}
        # a's first 150 ids get their truth through b, which forwards it to a; 30 of a's wrong.
        answers = [
            feedback(s["b"], ids["a"][:150], flowers["a"][:150], wrong=30),
            feedback(s["a"], ids["a"][150:], flowers["a"][150:], wrong=0),
            feedback(s["b"], ids["b"], flowers["b"], wrong=40),
            feedback(s["canary"], ids["canary"], flowers["canary"], wrong=50),
            feedback(s["elsewhere"], ids["elsewhere"], flowers["elsewhere"], wrong=0),
        ]
        assert [a["counted"] for a in answers] == [150, 150, 200, 50, 70], answers
        unknown = requests.post(f"{s['b'].url}/v2/models/iris/feedback", timeout=10,
                                json={"items": [{"id": f"not-an-id-{n}", "truth": [0]} for n in range(5)]})
        assert unknown.json()["unknown"] == 5, unknown.text
        traffic_s = time.time() - t0
        # The counters are exact once Prometheus has scraped after the last change.
        last = {}

        def caught_up():
            last["a"] = summary(s["a"])
            return last["a"]["feedback"]["rows"] == 500 and sum(classes(last["a"]).values()) == 500

        eventually(caught_up, 30, lambda: f"a's figures never reached the 500 rows of a and b: {last.get('a')}")
        # rate() and increase() extrapolate to the window's end by up to a scrape interval past
        # the last sample: read the figures at least 10 s after the first scrapes so that this
        # stays a small share of the 10 s sampled (measured: 2 to 9 %).
        time.sleep(max(0.0, prom.up_at + 10 - time.time()))
        last["a"] = summary(s["a"])
        yield {"servers": s, "prometheus": prom, "before": before, "a": last["a"], "traffic_s": traffic_s}
    finally:
        for server in servers.values():
            server.stop()
        if prom:
            prom.stop()


def test_figures_cover_every_replica_of_this_model_and_variant(replicas):
    s = replicas["a"]
    assert s["scope"] == "all replicas", s
    assert s["replicas"] == 2, s["scope_note"]
    assert "2 ready" in s["scope_note"] and "namespace mon" in s["scope_note"], s["scope_note"]
    # Counters summed at one instant: exact, and only a's and b's (not the canary's 50
    # versicolor, not the other namespace's 70).
    assert classes(s) == {"setosa": 220, "versicolor": 100, "virginica": 180}
    assert all(c["prior"] is not None for c in s["classes"]), s["classes"]
    f = s["feedback"]
    assert (f["rows"], f["correct"]) == (500, 430), f
    assert f["accuracy"] == pytest.approx(0.86)
    assert f["items"] == {"counted": 500, "unknown": 5}, f["items"]
    assert f["abs_error_mean"] is None


def test_the_traffic_chart_is_the_rate_of_every_replica(replicas):
    """sum(rate(...[1m])) every 10 s: with all the traffic inside the last minute (it took
    `traffic_s`), the last point is 500 requests a minute (a alone made 300), plus what rate()
    extrapolates past the last sample (under 20 % here), minus nothing: the request series
    are exported from 0, so the requests made before a series was first scraped are counted.
    A Prometheus this young has points only since it started."""
    assert replicas["traffic_s"] < 40, f"the traffic took {replicas['traffic_s']:.0f} s: too slow to fit one rate window"
    points = replicas["a"]["traffic"]
    assert 1 <= len(points) <= 61, points
    assert all(b["t"] - a["t"] == 10 for a, b in zip(points, points[1:])), points
    assert abs(points[-1]["t"] - time.time()) < 30, points[-1]
    last = points[-1]["requests_per_s"] * 60
    print(f"traffic took {replicas['traffic_s']:.1f} s; the last point says {last:.1f} requests a minute")
    assert 499 <= last <= 600, f"{last:.1f} requests in the last minute, not 500 (a alone: 300): {points[-3:]}"
    assert all(p["errors_per_s"] == 0 for p in points)
    busy = [p for p in points if p["requests_per_s"] > 0]
    assert busy and all(p["latency_ms"] is not None and p["latency_ms"] > 0 for p in busy), busy


def test_drift_sums_every_replicas_inputs(replicas):
    d = replicas["a"]["drift"]
    assert d["available"] is True, d
    print(f"drift window rows: {d['window_rows']}")
    assert 500 <= d["window_rows"] <= 600, d
    assert len(d["features"]) == 4 and all(x["psi"] is not None for x in d["features"]), d["features"]


def test_before_any_traffic_the_figures_are_zero_across_replicas(replicas):
    s = replicas["before"]
    assert (s["scope"], s["replicas"]) == ("all replicas", 2), s
    assert s["feedback"]["rows"] == 0 and sum(classes(s).values()) == 0, s


def test_a_server_without_the_url_reports_its_own_pod(replicas):
    s = summary(replicas["servers"]["b"])
    assert s["scope"] == "pod" and s["replicas"] is None, s
    assert "iris-b" in s["scope_note"] and "no --prometheus-url" in s["scope_note"], s["scope_note"]
    assert classes(s) == {"setosa": 120, "versicolor": 0, "virginica": 80}
    # b's own ids only: a's items it forwarded were counted by a.
    assert (s["feedback"]["rows"], s["feedback"]["correct"]) == (200, 160), s["feedback"]
    assert s["feedback"]["items"] == {"counted": 200, "unknown": 5}


def test_the_canary_sees_its_own_variant_only(replicas):
    s = summary(replicas["servers"]["canary"])
    assert (s["scope"], s["replicas"]) == ("all replicas", 1), s
    assert "canary" in s["scope_note"], s["scope_note"]
    assert classes(s) == {"setosa": 0, "versicolor": 50, "virginica": 0}
    assert (s["feedback"]["rows"], s["feedback"]["correct"]) == (50, 0), s["feedback"]


def test_a_namespace_prometheus_does_not_scrape_gives_this_pods_figures(replicas):
    """No ready replica of this model in Prometheus (the pod is not scraped, or the scrape adds
    no namespace label): all-replica zeros would be wrong, so the page shows this pod's and says why."""
    lone = start("iris-lone", "unscraped", "--prometheus-url", replicas["prometheus"].url)
    try:
        serve(lone, [0, 1, 2])
        s = summary(lone)
        assert s["scope"] == "pod", s
        assert "no ready replica" in s["scope_note"] and "namespace unscraped" in s["scope_note"], s["scope_note"]
        assert sum(classes(s).values()) == 3
    finally:
        lone.stop()


def test_the_panel_says_it_shows_every_replica(replicas, page):
    page.goto(f"{replicas['servers']['a'].url}/models/iris")
    page.wait_for_selector('#monitor-scope[data-scope="all replicas"]')
    assert "all 2 ready primary replicas" in page.inner_text("#monitor-scope")
    page.wait_for_selector("#monitor-accuracy-value")
    assert page.inner_text("#monitor-accuracy-value") == "86.0%"  # 430 of a's and b's 500 rows


# Last: it stops Prometheus.
def test_when_prometheus_is_down_the_page_says_so_with_this_pods_figures(replicas):
    replicas["prometheus"].stop()
    s = summary(replicas["servers"]["a"])
    assert s["scope"] == "pod", s
    assert "Prometheus did not answer" in s["scope_note"], s["scope_note"]
    assert classes(s) == {"setosa": 100, "versicolor": 100, "virginica": 100}
