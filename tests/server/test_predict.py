"""`modelship-server predict`: CSV (with and without a header) and JSON Lines
in, one JSON line per scored row out; bad rows reported by line and skipped,
or failing the run with --fail-on-bad-rows (exit code 14); empty input is not
an error. The sharded runs (prefixes, S3, Parquet, reports) are test_batch.py."""

import json
import subprocess
from pathlib import Path

import pytest

from conftest import FLOWERS, LABELS, SERVER_BIN

CLASSES = ["setosa", "versicolor", "virginica"]
HEADER = "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)"


def predict(tmp_path: Path, text: str, *args: str, suffix: str = ".csv", stdin: bool = False):
    if not SERVER_BIN or not Path(SERVER_BIN).exists():
        pytest.fail(f"MODELSHIP_SERVER_BIN={SERVER_BIN!r} is not a built binary (run via `make test-server`)")
    out = tmp_path / "out.jsonl"
    cmd = [SERVER_BIN, "predict", "--model", "builtin://iris", "--runtime", "tract", "--output", str(out), *args]
    if stdin:
        cmd += ["--input", "-"]
        proc = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=60)
    else:
        src = tmp_path / f"in{suffix}"
        src.write_text(text)
        proc = subprocess.run([*cmd, "--input", str(src)], capture_output=True, text=True, timeout=60)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return proc, rows


def summary(proc) -> str:
    return [line for line in proc.stderr.splitlines() if line.startswith("predict: ")][-1]


def assert_flowers(rows, ids=(0, 1, 2)):
    assert [r["row"] for r in rows] == list(ids)
    assert [r["label"] for r in rows] == LABELS
    assert [r["class"] for r in rows] == CLASSES
    for r in rows:
        assert len(r["probabilities"]) == 3 and abs(sum(r["probabilities"]) - 1) < 1e-4


def test_csv_with_header(tmp_path):
    text = HEADER + "\n" + "\n".join(",".join(map(str, f)) for f in FLOWERS) + "\n"
    proc, rows = predict(tmp_path, text)
    assert proc.returncode == 0, proc.stderr
    assert_flowers(rows)
    assert "3 rows scored, 0 bad rows skipped (header line read)" in summary(proc)


def test_csv_header_picks_columns_by_name(tmp_path):
    # Columns in another order plus an extra id column: the header names them.
    cols = HEADER.split(",")
    text = "id," + ",".join(reversed(cols)) + "\n"
    text += "\n".join(f"f{i}," + ",".join(map(str, reversed(f))) for i, f in enumerate(FLOWERS))
    proc, rows = predict(tmp_path, text)
    assert proc.returncode == 0, proc.stderr
    assert_flowers(rows)


def test_csv_without_header_from_stdin(tmp_path):
    text = "\n".join(",".join(map(str, f)) for f in FLOWERS)
    proc, rows = predict(tmp_path, text, stdin=True)
    assert proc.returncode == 0, proc.stderr
    assert_flowers(rows)
    assert "3 rows scored, 0 bad rows skipped," in summary(proc)


def test_json_lines_arrays_and_objects(tmp_path):
    names = HEADER.split(",")
    lines = [
        json.dumps(FLOWERS[0]),
        json.dumps({"input": FLOWERS[1]}),
        "",
        json.dumps(dict(zip(names, FLOWERS[2]))),
    ]
    proc, rows = predict(tmp_path, "\n".join(lines) + "\n", suffix=".jsonl")
    assert proc.returncode == 0, proc.stderr
    assert_flowers(rows)
    # Sniffed from the first character when the name says nothing.
    proc, rows = predict(tmp_path, "\n".join(lines) + "\n", stdin=True)
    assert proc.returncode == 0, proc.stderr
    assert_flowers(rows)


def test_bad_rows_are_reported_by_line_and_skipped(tmp_path):
    text = "\n".join(
        [
            HEADER,
            ",".join(map(str, FLOWERS[0])),
            "1,2,oops,4",
            ",".join(map(str, FLOWERS[1])),
            "1,2,3",
            ",".join(map(str, FLOWERS[2])),
        ]
    )
    proc, rows = predict(tmp_path, text)
    assert proc.returncode == 0, proc.stderr
    assert_flowers(rows, ids=(0, 2, 4))
    assert 'line 3 (row 1): column 3: "oops" is not a number; skipped' in proc.stderr
    assert "line 5 (row 3): expected 4 values, got 3; skipped" in proc.stderr
    assert "3 rows scored, 2 bad rows skipped" in summary(proc)


def test_bad_json_line_is_reported(tmp_path):
    text = json.dumps(FLOWERS[0]) + "\n{not json\n" + json.dumps({"petals": 1}) + "\n"
    proc, rows = predict(tmp_path, text, suffix=".jsonl")
    assert proc.returncode == 0, proc.stderr
    assert [r["class"] for r in rows] == ["setosa"]
    assert "line 2 (row 1): invalid JSON" in proc.stderr
    assert "line 3 (row 2): missing feature 'sepal length (cm)'" in proc.stderr
    assert "1 rows scored, 2 bad rows skipped" in summary(proc)


def test_fail_on_bad_rows_stops_the_run(tmp_path):
    text = ",".join(map(str, FLOWERS[0])) + "\n1,2,nan,4\n" + ",".join(map(str, FLOWERS[2])) + "\n"
    proc, _ = predict(tmp_path, text, "--fail-on-bad-rows")
    assert proc.returncode == 14, proc.stderr
    assert "in.csv: line 2 (row 1): column 3: NaN is not a finite number (--bad-rows fail)" in proc.stderr


@pytest.mark.parametrize("text", ["", "\n\n"], ids=["empty", "blank lines"])
def test_empty_input_scores_nothing(tmp_path, text):
    proc, rows = predict(tmp_path, text)
    assert proc.returncode == 0, proc.stderr
    assert rows == []
    assert "0 rows scored, 0 bad rows skipped" in summary(proc)


def test_regression_model_writes_its_output_by_name(tmp_path):
    card = json.loads((Path(__file__).resolve().parents[2] / "models" / "diabetes.card.json").read_text())
    src = tmp_path / "in.csv"
    src.write_text(",".join(map(str, card["example"])) + "\n")
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [SERVER_BIN, "predict", "--model", "builtin://diabetes", "--input", str(src), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0 and ("ONNX Runtime is not available" in proc.stderr or "tract cannot run" in proc.stderr):
        pytest.skip("skipped: the diabetes model needs ONNX Runtime, which is not installed here")
    assert proc.returncode == 0, proc.stderr
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["row"] == 0 and isinstance(row["predictions"], float)
