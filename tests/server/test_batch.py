"""`modelship-server predict` as one shard of a batch Job (docs/batch.md):
shards 0..N-1 of a prefix, together, score every input row exactly once, in
input order within each part; CSV with quoted newlines across every split,
JSON Lines on S3 (moto on loopback), Parquet by row groups; keep-columns;
bad rows skipped and listed, or exit 14; input missing exit 10; output of
another run exit 11 (and --overwrite); SIGTERM mid-shard exits 143 and leaves
no part; the manifest."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SERVER_BIN

FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ACCESS = {"AWS_ACCESS_KEY_ID": "batch-test", "AWS_SECRET_ACCESS_KEY": "batch-test", "AWS_REGION": "us-east-1"}


def binary() -> str:
    if not SERVER_BIN or not Path(SERVER_BIN).exists():
        pytest.fail(f"MODELSHIP_SERVER_BIN={SERVER_BIN!r} is not a built binary (run via `make test-server`)")
    return SERVER_BIN


def features(i: int) -> list[float]:
    """A spread of flowers, so that all three classes come out."""
    return [4.5 + (i * 7 % 35) / 10, 2.0 + (i * 3 % 22) / 10, 1.0 + (i * 11 % 59) / 10, 0.1 + (i * 5 % 24) / 10]


def predict(*args: str, env: dict | None = None, tlog: Path | None = None, wait: bool = True):
    cmd = [binary(), "predict", "--model", "builtin://iris", "--runtime", "tract", *args]
    if tlog is not None:
        cmd += ["--termination-log", str(tlog)]
    full_env = {**os.environ, **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=120)


def run_shards(n: int, inp: str, out: str, *extra: str, env: dict | None = None, run_id: str = "run-1", tmp: Path):
    """Runs shards 0..n-1 at once, as a Job's pods do; returns each one's (process, termination message)."""
    procs = []
    for i in range(n):
        tlog = tmp / f"tlog-{run_id}-{i}"
        args = ["--input", inp, "--output", out, "--shard", f"{i}/{n}", "--run-id", run_id, *extra]
        procs.append((predict(*args, env=env, tlog=tlog, wait=False), tlog))
    done = []
    for proc, tlog in procs:
        stdout, stderr = proc.communicate(timeout=120)
        proc.stderr_text = stderr
        done.append((proc, json.loads(tlog.read_text())))
    return done


def jsonl_rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line]


def whole_run(tmp: Path, inp: str, *extra: str, env: dict | None = None) -> dict:
    """The unsharded reference: one run of the whole input to one file, by id."""
    out = tmp / f"whole-{len(list(tmp.iterdir()))}.jsonl"
    proc = predict("--input", inp, "--output", str(out), *extra, env=env)
    assert proc.returncode == 0, proc.stderr
    return {r["id"]: r for r in jsonl_rows(out.read_text())}


def check_parts(parts: list[list[dict]], reference: dict, keep=("id",)):
    """Every id exactly once over all parts, each part in input order, answers as the whole run's."""
    ids = [r["id"] for part in parts for r in part]
    assert len(ids) == len(set(ids)), "an id was scored twice"
    assert set(ids) == set(reference), "ids missing or invented"
    assert ids == sorted(ids, key=lambda i: int(str(i).lstrip("r"))), "rows out of input order"
    for part in parts:
        for r in part:
            want = reference[r["id"]]
            for k in (*keep, "label", "class"):
                assert r[k] == want[k], (k, r, want)
            # The last float bit may differ with the rows batched beside (SIMD lanes).
            assert r["probabilities"] == pytest.approx(want["probabilities"], rel=1e-6)


def tricky_csv(path: Path, first: int, count: int):
    """A CSV whose quoted `note` column holds commas, doubled quotes and newlines, every third row."""
    lines = ["id,note," + ",".join(FEATURES)]
    for i in range(first, first + count):
        note = ['plain', 'two\nlines, "quoted"', '\r\nstarts with a newline\n\n'][i % 3]
        note = '"' + note.replace('"', '""') + '"'
        lines.append(f"r{i},{note}," + ",".join(map(str, features(i))))
    path.write_text("\n".join(lines) + "\n", newline="")


def test_csv_shards_with_quoted_newlines_score_every_row_once(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    # Three files, sorted by name; the small middle one falls inside a shard.
    for name, first, count in [("a.csv", 0, 700), ("b.csv", 700, 5), ("c.csv", 705, 600)]:
        tricky_csv(src / name, first, count)
    (src / "_SUCCESS").write_text("")  # hidden: not input
    reference = whole_run(tmp_path, str(src), "--keep-columns", "id,note")
    assert len(reference) == 1305
    assert {r["class"] for r in reference.values()} == {"setosa", "versicolor", "virginica"}
    assert reference["r1"]["note"] == 'two\nlines, "quoted"'
    for n in (1, 4, 7):
        out = tmp_path / f"out-{n}"
        shards = run_shards(n, str(src), str(out), "--keep-columns", "id,note", run_id=f"csv-{n}", tmp=tmp_path)
        for proc, message in shards:
            assert proc.returncode == 0, proc.stderr_text
        parts = [jsonl_rows((out / f"part-{i:05d}.jsonl").read_text()) for i in range(n)]
        check_parts(parts, reference, keep=("id", "note"))
        assert [m["rows"]["scored"] for _, m in shards] == [len(p) for p in parts]
        assert {m["part"] for _, m in shards} == {f"part-{i:05d}.jsonl" for i in range(n)}
        report = json.loads((out / "_reports" / "part-00000.json").read_text())
        assert report["runId"] == f"csv-{n}" and report["status"] == "done" and report["shards"] == n
        # The manifest: all reports there, totals.
        tlog = tmp_path / f"manifest-{n}"
        proc = subprocess.run(
            [binary(), "predict", "--write-manifest", "--output", str(out), "--shards", str(n), "--run-id", f"csv-{n}",
             "--termination-log", str(tlog)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        manifest = json.loads((out / "_manifest.json").read_text())
        assert manifest["rows"] == {"scored": 1305, "skipped": 0}
        assert [p["part"] for p in manifest["parts"]] == [f"part-{i:05d}.jsonl" for i in range(n)]
        assert manifest["model"]["uri"] == "builtin://iris" and len(manifest["model"]["sha256"]) == 64
        assert json.loads(tlog.read_text())["rows"]["scored"] == 1305


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on loopback, from the project's venv."""
    moto = Path(sys.executable).parent / "moto_server"
    if not moto.exists():
        pytest.fail(f"{moto} is missing (run scripts/setup-python.sh)")
    port = free_port()
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.1)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="batch-test", aws_secret_access_key="batch-test")
    yield client, {**ACCESS, "AWS_ENDPOINT_URL": endpoint}
    proc.terminate()
    proc.wait(timeout=10)


def s3_text(client, bucket, key) -> str:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def test_jsonl_shards_on_s3(s3, tmp_path):
    client, env = s3
    client.create_bucket(Bucket="data")
    client.create_bucket(Bucket="scores")
    for f, (first, count) in enumerate([(0, 400), (400, 350)]):
        body = "".join(json.dumps({"id": f"r{i}", **dict(zip(FEATURES, features(i)))}) + "\n" for i in range(first, first + count))
        client.put_object(Bucket="data", Key=f"day/part-{f}.jsonl", Body=body.encode())
    reference = whole_run(tmp_path, "s3://data/day/", "--keep-columns", "id", env=env)
    assert len(reference) == 750
    n = 3
    shards = run_shards(n, "s3://data/day/", "s3://scores/day/", "--keep-columns", "id", env=env, run_id="s3-run", tmp=tmp_path)
    for proc, _ in shards:
        assert proc.returncode == 0, proc.stderr_text
    parts = [jsonl_rows(s3_text(client, "scores", f"day/part-{i:05d}.jsonl")) for i in range(n)]
    check_parts(parts, reference)
    report = json.loads(s3_text(client, "scores", "day/_reports/part-00002.json"))
    assert report["runId"] == "s3-run" and report["rows"]["scored"] == len(parts[2])
    proc = subprocess.run([binary(), "predict", "--write-manifest", "--output", "s3://scores/day/", "--shards", "3",
                           "--run-id", "s3-run"], env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(s3_text(client, "scores", "day/_manifest.json"))["rows"]["scored"] == 750
    # Another run into the same prefix is refused; --overwrite replaces the old run.
    again = predict("--input", "s3://data/day/", "--output", "s3://scores/day/", "--shard", "0/1", "--run-id", "other",
                    env=env, tlog=tmp_path / "again")
    assert again.returncode == 11, again.stderr
    assert json.loads((tmp_path / "again").read_text())["reason"] == "OutputNotEmpty"
    over = predict("--input", "s3://data/day/", "--output", "s3://scores/day/", "--shard", "0/1", "--run-id", "other",
                   "--overwrite", env=env)
    assert over.returncode == 0, over.stderr
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="scores", Prefix="day/")["Contents"])
    assert keys == ["day/_reports/part-00000.json", "day/part-00000.jsonl"]
    assert len(jsonl_rows(s3_text(client, "scores", "day/part-00000.jsonl"))) == 750
    # A missing input prefix: exit 10, named.
    missing = predict("--input", "s3://data/nothing-here/", "--output", "s3://scores/x/", "--shard", "0/2",
                      "--run-id", "m", env=env, tlog=tmp_path / "missing")
    assert missing.returncode == 10, missing.stderr
    assert json.loads((tmp_path / "missing").read_text())["reason"] == "InputNotFound"


def test_parquet_shards_by_row_group(s3, tmp_path):
    client, env = s3
    rows = 2000
    table = pa.table({
        "id": pa.array(range(rows), pa.int64()),
        **{f: pa.array([features(i)[j] for i in range(rows)], pa.float64()) for j, f in enumerate(FEATURES)},
    })
    local = tmp_path / "flowers.parquet"
    pq.write_table(table, local, row_group_size=150)  # 14 row groups
    client.create_bucket(Bucket="pqdata")
    client.upload_file(str(local), "pqdata", "in/flowers.parquet")
    reference = whole_run(tmp_path, str(local), "--keep-columns", "id")
    assert len(reference) == rows
    # A codec this build leaves out (zstd) is refused for good (2), not retried (1).
    pq.write_table(table.slice(0, 10), tmp_path / "zstd.parquet", compression="zstd")
    zstd = predict("--input", str(tmp_path / "zstd.parquet"), "--output", str(tmp_path / "zstd-out"), "--shard", "0/1",
                   "--run-id", "z", tlog=tmp_path / "zstd")
    assert zstd.returncode == 2, zstd.stderr
    assert "zstd" in json.loads((tmp_path / "zstd").read_text())["message"]
    for inp, out in [(str(local), str(tmp_path / "pq-out")), ("s3://pqdata/in/", "s3://pqdata/out/")]:
        n = 4
        shards = run_shards(n, inp, out, "--keep-columns", "id", "--output-format", "parquet", env=env,
                            run_id="pqdata", tmp=tmp_path)
        for proc, message in shards:
            assert proc.returncode == 0, proc.stderr_text
            assert message["part"].endswith(".parquet")
        parts = []
        for i in range(n):
            name = f"part-{i:05d}.parquet"
            if out.startswith("s3://"):
                client.download_file("pqdata", f"out/{name}", str(tmp_path / name))
                path = tmp_path / name
            else:
                path = Path(out) / name
            part = pq.read_table(path)
            if part.num_rows:  # a part with no rows has no first value to type its kept columns by
                assert part.schema.field("id").type == pa.int64()
            parts.append(part.to_pylist())
        assert sum(1 for p in parts if p) >= 3, "row groups spread over the shards"
        ids = [r["id"] for p in parts for r in p]
        assert ids == list(range(rows)), "every id once, in order"
        for p in parts:
            for r in p:
                want = reference[r["id"]]
                assert (r["label"], r["class"]) == (want["label"], want["class"])
                assert r["probabilities"] == pytest.approx(want["probabilities"], rel=1e-6)


def test_bad_rows_are_listed_or_fail_the_shard(tmp_path):
    src = tmp_path / "bad.csv"
    lines = ["id," + ",".join(FEATURES)]
    for i in range(300):
        lines.append(f"r{i}," + ",".join(map(str, features(i))))
    lines[101] = "r100,1,2,oops,4"  # line 102 of the file
    lines[201] = "r200,1,2,3"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    shards = run_shards(2, str(src), str(out), "--keep-columns", "id", run_id="bad", tmp=tmp_path)
    assert [p.returncode for p, _ in shards] == [0, 0]
    assert sum(m["rows"]["skipped"] for _, m in shards) == 2
    assert sum(m["rows"]["scored"] for _, m in shards) == 298
    listed = []
    for i in range(2):
        listed += json.loads((out / "_reports" / f"part-{i:05d}.json").read_text())["skippedRows"]
    assert [(s["file"], s["line"], s["row"]) for s in listed] == [(str(src), 102, 100), (str(src), 202, 200)]
    assert 'column 4: "oops" is not a number' in listed[0]["reason"]
    subprocess.run([binary(), "predict", "--write-manifest", "--output", str(out), "--shards", "2", "--run-id", "bad"],
                   check=True, capture_output=True, timeout=60)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows"] == {"scored": 298, "skipped": 2} and len(manifest["skippedRows"]) == 2
    # --bad-rows fail: exit 14 naming file and line, and no part.
    failed = predict("--input", str(src), "--output", str(tmp_path / "out2"), "--shard", "0/1", "--run-id", "f",
                     "--bad-rows", "fail", tlog=tmp_path / "fail")
    assert failed.returncode == 14, failed.stderr
    message = json.loads((tmp_path / "fail").read_text())
    assert message["reason"] == "BadRows" and f"{src}: line 102 (row 100)" in message["message"]
    assert not (tmp_path / "out2" / "part-00000.jsonl").exists()
    assert [p.name for p in (tmp_path / "out2").iterdir()] == ["_reports"], "no temporary file left behind"


def test_missing_input_and_output_of_another_run(tmp_path):
    proc = predict("--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o"), "--shard", "0/2", "--run-id", "a",
                   tlog=tmp_path / "t")
    assert proc.returncode == 10, proc.stderr
    assert json.loads((tmp_path / "t").read_text())["reason"] == "InputNotFound"
    src = tmp_path / "in.csv"
    src.write_text(",".join(FEATURES) + "\n" + ",".join(map(str, features(1))) + "\n")
    out = tmp_path / "o"
    out.mkdir()
    (out / "part-00000.jsonl").write_text("{}\n")  # a part with no report: someone else's
    proc = predict("--input", str(src), "--output", str(out), "--shard", "0/1", "--run-id", "a")
    assert proc.returncode == 11, proc.stderr
    assert "part-00000.jsonl" in proc.stderr
    # Usage errors exit 2.
    assert predict("--input", str(src), "--output", str(out), "--shard", "2/2").returncode == 2


def test_sigterm_mid_shard_exits_143_and_leaves_no_part(tmp_path):
    src = tmp_path / "big.csv"
    with src.open("w") as f:
        f.write(",".join(FEATURES) + "\n")
        for i in range(400_000):
            f.write("5.1,3.5,1.4,0.2\n")
    out = tmp_path / "out"
    proc = predict("--input", str(src), "--output", str(out), "--shard", "0/1", "--run-id", "t", "--batch-size", "64",
                   tlog=tmp_path / "t", wait=False)
    report = out / "_reports" / "part-00000.json"
    deadline = time.time() + 60
    while not report.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.2)
    assert proc.poll() is None, "the shard finished before it could be killed: make the input bigger"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert json.loads((tmp_path / "t").read_text())["reason"] == "Terminated"
    assert sorted(p.name for p in out.iterdir()) == ["_reports"], "no part, no temporary file"
    assert json.loads(report.read_text())["status"] == "running"
