"""Payload logging through the real binary: CloudEvents to an HTTP receiver run by the
test (headers, bodies, request/response pairs by the server's inference id, whatever the
wire form), in batched mode (the default) and binary mode (`--payload-log-http-batch 1`),
a quiet server sending at once, a 5xx receiver retried and its events counted dropped,
sampling, a dead and a slow sink under load (drops counted, memory bounded, every inference
answered), SIGTERM flushing the queue, and the S3 sink (moto on loopback) writing whole gzip
JSON Lines objects."""

import concurrent.futures
import gzip
import json
import signal
import struct
import time

import pytest
import requests

from conftest import FLOWERS, free_port
from monitor_helpers import start_iris, BATCH_CONTENT_TYPE, Receiver, body_json, infer, metric, one_flower

# The ceiling of the server's resident memory under a dead or slow sink, with a 200-event
# queue: the debug binary with Iris serves in about 40 MB; the queue holds at most 200 small events.
RSS_CEILING_MB = 150


def start(*args, env=None):
    return start_iris(*args, env=env)


def rss_mb(server) -> float:
    with open(f"/proc/{server.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.mark.parametrize("batch", ["100", "1"], ids=["batched", "binary"])
def test_each_inference_gives_a_request_and_a_response_event_paired_by_the_server_id(receiver, batch):
    s = start(
        "--payload-log", receiver.url, "--payload-log-http-batch", batch,
        env={"MODELSHIP_NAMESPACE": "shop", "MODELSHIP_POD_NAME": "iris-0"},
    )
    try:
        session = requests.Session()
        answers = {}
        # v2 JSON, with a client id reused twice: joins never rely on it.
        for i in range(3):
            r = infer(session, s, [FLOWERS[i]], client_id="same")
            iid = r.headers["x-modelship-inference-id"]
            assert r.json()["parameters"]["modelship_inference_id"] == iid
            assert r.json()["id"] == "same"
            answers[iid] = ([FLOWERS[i]], r.json())
        # The binary tensor extension: logged as v2 JSON all the same.
        header = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                         "parameters": {"binary_data_size": 16}}]}).encode()
        r = session.post(f"{s.url}/v2/models/iris/infer", data=header + struct.pack("<4f", *FLOWERS[2]),
                         headers={"Inference-Header-Content-Length": str(len(header))})
        assert r.status_code == 200, r.text
        answers[r.headers["x-modelship-inference-id"]] = ([FLOWERS[2]], r.json())
        # v1.
        r = session.post(f"{s.url}/v1/models/iris:predict", json={"instances": [FLOWERS[1]]})
        assert r.status_code == 200, r.text
        v1_id = r.headers["x-modelship-inference-id"]
        # gRPC: the id in the response's parameters. KServe's generated modules, as test_grpc.py
        # uses in-process: tritonclient's define the same `inference` protobuf package, and one
        # process can load only one of the two (test_grpc.py runs tritonclient in its own process).
        import grpc
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

        with grpc.insecure_channel(s.grpc_target) as channel:
            res = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(pb.ModelInferRequest(
                model_name="iris",
                inputs=[pb.ModelInferRequest.InferInputTensor(
                    name="input", datatype="FP32", shape=[1, 4],
                    contents=pb.InferTensorContents(fp32_contents=FLOWERS[0]))],
            ), timeout=10)
        grpc_id = res.parameters["modelship_inference_id"].string_param
        assert grpc_id and grpc_id not in answers

        ids = list(answers) + [v1_id, grpc_id]
        assert len(set(ids)) == len(ids)
        events = receiver.wait_for(2 * len(ids))
        time.sleep(0.3)
        events = receiver.snapshot()
        assert len(events) == 2 * len(ids)
        ce_ids = [h["ce-id"] for h, _ in events]
        assert len(set(ce_ids)) == len(ce_ids), "every event has its own ce-id"
        by_id = {}
        for h, body in events:
            assert h["ce-specversion"] == "1.0"
            assert h["ce-source"] == "/modelship/shop/iris/iris-0"
            assert h["ce-model"] == "iris" and h["ce-namespace"] == "shop" and h["ce-variant"] == "primary"
            assert h["content-type"] == "application/json"
            assert "ce-truncated" not in h and "ce-time" in h
            kind = h["ce-type"].rsplit(".", 1)[1]
            assert h["ce-type"] == f"org.kubeflow.serving.inference.{kind}"
            assert h["ce-id"] == f"{h['ce-inferenceid']}.{kind}"
            by_id.setdefault(h["ce-inferenceid"], {})[kind] = json.loads(body)
        assert set(by_id) == set(ids)
        for iid, (rows, answer) in answers.items():
            req, resp = by_id[iid]["request"], by_id[iid]["response"]
            assert req["inputs"][0]["name"] == "input" and req["inputs"][0]["shape"] == [1, 4]
            assert req["inputs"][0]["data"] == pytest.approx(sum(rows, []), rel=1e-6)
            assert resp["model_name"] == "iris"
            logged = {o["name"]: o["data"] for o in resp["outputs"]}
            sent = {o["name"]: o["data"] for o in answer["outputs"]}
            assert logged["label"] == sent["label"]
            assert logged["probabilities"] == pytest.approx(sent["probabilities"], rel=1e-6)
        assert by_id[grpc_id]["request"]["inputs"][0]["data"] == pytest.approx(FLOWERS[0], rel=1e-6)
        assert by_id[v1_id]["response"]["outputs"][0]["name"] == "label"
        assert metric(s, "modelship_payload_log_events_total", type="request", result="sent") == len(ids)
        posts = receiver.post_log()
        assert sum(n for _, n in posts) == len(events)
        if batch == "1":
            assert posts == [("application/json", 1)] * len(events), "binary mode: one event per POST"
        else:
            assert {t for t, _ in posts} == {BATCH_CONTENT_TYPE}, posts
            assert max(n for _, n in posts) <= 100
    finally:
        s.stop()


def test_a_quiet_server_sends_its_events_at_once_in_a_batch_of_what_is_queued(receiver):
    s = start("--payload-log", receiver.url)  # the default batch, 100
    try:
        r = infer(requests.Session(), s, one_flower(0))
        answered = time.time()
        events = receiver.wait_for(2, timeout=1.0)  # not held back for 98 more
        print(f"quiet server: both events at the receiver {time.time() - answered:.3f}s after the answer")
        assert {h["ce-inferenceid"] for h, _ in events} == {r.headers["x-modelship-inference-id"]}
        assert all(t == BATCH_CONTENT_TYPE for t, _ in receiver.post_log())
    finally:
        s.stop()


def test_a_receiver_answering_5xx_is_retried_then_each_event_is_counted_dropped():
    receiver = Receiver(status=503)
    s = start("--payload-log", receiver.url)
    try:
        infer(requests.Session(), s, one_flower(0))
        deadline = time.time() + 10
        while metric(s, "modelship_payload_log_dropped_total", reason="sink_error") < 2 and time.time() < deadline:
            time.sleep(0.1)
        assert metric(s, "modelship_payload_log_dropped_total", reason="sink_error") == 2
        assert metric(s, "modelship_payload_log_events_total", result="dropped") == 2
        assert metric(s, "modelship_payload_log_events_total", result="sent") == 0
        # However the two were batched, each was in 3 tries.
        assert sum(n for _, n in receiver.post_log()) == 3 * 2, receiver.post_log()
    finally:
        s.stop()
        receiver.close()


def test_response_mode_logs_no_inputs_and_a_body_over_the_cap_is_flagged(receiver):
    s = start("--payload-log", receiver.url, "--payload-log-mode", "response", "--payload-log-max-bytes", "400")
    try:
        session = requests.Session()
        infer(session, s, one_flower(0))
        infer(session, s, [FLOWERS[0]] * 20)
        events = receiver.wait_for(2)
        time.sleep(0.3)
        events = receiver.snapshot()
        assert [h["ce-type"] for h, _ in events] == ["org.kubeflow.serving.inference.response"] * 2
        small, big = sorted(events, key=lambda e: len(e[1]) if "ce-truncated" not in e[0] else 10**9)
        assert "ce-truncated" not in small[0]
        assert "inputs" not in body_json(small)
        assert big[0]["ce-truncated"] == "true"
        note = body_json(big)
        assert note["truncated"] is True and note["bytes"] > 400
        assert metric(s, "modelship_payload_log_truncated_total", type="response") == 1
    finally:
        s.stop()


def test_a_sample_rate_of_a_tenth_logs_about_a_tenth(receiver):
    s = start("--payload-log", receiver.url, "--payload-log-sample-rate", "0.1")
    n = 5000
    try:
        def send(k):
            session = requests.Session()
            for i in range(k, n, 4):
                infer(session, s, one_flower(i))

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(send, range(4)))
        # Every sampled event was queued before its answer; wait until all are sent.
        deadline, prev, since = time.time() + 20, -1, time.time()
        while time.time() < deadline:
            got = len(receiver.snapshot())
            if got != prev:
                prev, since = got, time.time()
            elif got == metric(s, "modelship_payload_log_events_total") and time.time() - since > 0.5:
                break
            time.sleep(0.1)
        assert metric(s, "modelship_payload_log_dropped_total") == 0
        pairs = {}
        for h, _ in receiver.snapshot():
            pairs.setdefault(h["ce-inferenceid"], set()).add(h["ce-type"].rsplit(".", 1)[1])
        complete = [i for i, kinds in pairs.items() if kinds == {"request", "response"}]
        assert len(complete) == len(pairs), "request and response are sampled together"
        assert 440 <= len(complete) <= 560, f"{len(complete)} pairs of {n} at rate 0.1"
    finally:
        s.stop()


@pytest.mark.parametrize("sink", ["dead", "slow"])
def test_a_dead_or_slow_sink_drops_and_counts_and_never_holds_inference_up(sink):
    receiver = None
    if sink == "dead":
        url = f"http://127.0.0.1:{free_port()}/events"  # nothing listens there
    else:
        receiver = Receiver(delay=2.0)
        url = receiver.url
    # Batches of 2: the sink then drains at most 8 POSTs x 2 events per try cycle (0.5 s of
    # retries to a dead sink, 2 s to the slow one), far below what 4 clients send even on a
    # loaded machine, so the queue must fill; with batches of 100 a slow machine's clients
    # could send too little to fill it (seen once at load 4 on 2 cores).
    s = start("--payload-log", url, "--payload-log-queue", "200", "--payload-log-http-batch", "2",
              "--shutdown-timeout", "1s")
    try:
        n = 2000
        codes = []

        def send(k):
            session = requests.Session()
            got = []
            for i in range(k, n, 4):
                body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": one_flower(i)}]}
                got.append(session.post(f"{s.url}/v2/models/iris/infer", json=body, timeout=10).status_code)
            return got

        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for got in pool.map(send, range(4)):
                codes.extend(got)
        took = time.time() - started
        assert codes == [200] * n, "every inference is answered"
        assert rss_mb(s) < RSS_CEILING_MB, f"RSS {rss_mb(s):.0f} MB"
        full = metric(s, "modelship_payload_log_dropped_total", reason="queue_full")
        assert full > 0, "a full queue drops events"
        if sink == "dead":
            deadline = time.time() + 10
            while metric(s, "modelship_payload_log_dropped_total", reason="sink_error") == 0 and time.time() < deadline:
                time.sleep(0.2)
            assert metric(s, "modelship_payload_log_dropped_total", reason="sink_error") > 0
        else:
            assert metric(s, "modelship_payload_log_events_total", result="sent") < 2 * n
        assert metric(s, "modelship_payload_log_events_total", result="dropped") >= full
        print(f"{sink} sink: {n} inferences in {took:.1f}s, {full:.0f} events dropped (queue full), RSS {rss_mb(s):.0f} MB")
    finally:
        s.stop()
        if receiver:
            receiver.close()


def test_sigterm_sends_what_is_queued_before_exit():
    # A receiver taking 1 s per POST and batches of at most 7: about 56 events a second
    # leave, so most of the 300 are still queued when SIGTERM comes.
    receiver = Receiver(delay=1.0)
    s = start("--payload-log", receiver.url, "--payload-log-http-batch", "7")
    try:
        session = requests.Session()
        n = 150
        for i in range(n):
            infer(session, s, one_flower(i))
        before = len(receiver.snapshot())
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=25) == 0
        after = receiver.snapshot()
        assert before < 2 * n, "the queue was not already empty when SIGTERM came"
        assert len(after) == 2 * n, f"{len(after)} of {2 * n} events after SIGTERM"
        assert len({h["ce-id"] for h, _ in after}) == 2 * n
        assert max(k for _, k in receiver.post_log()) <= 7
    finally:
        s.stop()
        receiver.close()


@pytest.fixture
def moto():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_the_s3_sink_writes_whole_gzip_json_lines_objects(moto, tmp_path):
    import boto3

    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="logs")
    s = start("--payload-log", "s3://logs/iris/events", "--payload-log-batch", "50",
              "--payload-log-flush-interval", "1s", env={**creds, "AWS_ENDPOINT_URL": moto})
    try:
        session = requests.Session()
        ids = [infer(session, s, one_flower(i)).headers["x-modelship-inference-id"] for i in range(120)]
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=25) == 0
    finally:
        s.stop()
    objects = s3.list_objects_v2(Bucket="logs", Prefix="iris/events/")["Contents"]
    lines = []
    for o in objects:
        assert o["Key"].endswith(".jsonl.gz")
        parts = o["Key"].split("/")
        assert len(parts) == 6 and len(parts[2]) == 4, o["Key"]  # prefix/yyyy/mm/dd/name
        data = gzip.decompress(s3.get_object(Bucket="logs", Key=o["Key"])["Body"].read())
        assert data.endswith(b"\n")
        batch = [json.loads(line) for line in data.decode().splitlines()]
        assert 1 <= len(batch) <= 50
        lines.extend(batch)
    assert len(lines) == 2 * len(ids)
    assert len([o for o in objects]) >= 5  # 240 events in objects of at most 50
    for e in lines:
        assert e["specversion"] == "1.0" and e["datacontenttype"] == "application/json"
        assert e["id"] == f"{e['inferenceid']}.{e['type'].rsplit('.', 1)[1]}"
    assert {e["inferenceid"] for e in lines} == set(ids)
    req = next(e for e in lines if e["type"].endswith(".request"))
    assert req["data"]["inputs"][0]["shape"] == [1, 4]


def test_the_file_sink_appends_json_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    s = start("--payload-log", f"file://{path}", "--payload-log-mode", "request")
    try:
        session = requests.Session()
        iid = infer(session, s, one_flower(1)).headers["x-modelship-inference-id"]
        deadline = time.time() + 5
        while (not path.exists() or not path.read_text()) and time.time() < deadline:
            time.sleep(0.05)
        (line,) = [json.loads(x) for x in path.read_text().splitlines()]
        assert line["inferenceid"] == iid and line["type"] == "org.kubeflow.serving.inference.request"
        assert line["data"]["inputs"][0]["data"] == pytest.approx(FLOWERS[1], rel=1e-6)
    finally:
        s.stop()
