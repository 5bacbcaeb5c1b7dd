"""Offline batch scoring, end to end (process start to last row written): `modelship-server
predict` as one shard of a batch Job against what a data scientist runs instead, pandas +
scikit-learn (`read_csv`/`read_parquet`, `predict` + `predict_proba`, `to_json(lines=True)`),
on the same 1,000,000 Iris rows and the same logistic regression. Wall time, rows/s and peak
RSS from `/usr/bin/time -v`. Prints a Markdown table for docs/benchmarks.md.

    python bench/bench_batch.py [--server-bin PATH] [--rows N] [--repeats K]
"""

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]

BASELINE = """
import sys
import pandas as pd
sys.path.insert(0, {models!r})
from generate import iris_logistic_regression
model = iris_logistic_regression()[0]
src, out = sys.argv[1], sys.argv[2]
df = pd.read_parquet(src) if src.endswith(".parquet") else pd.read_csv(src)
x = df[{features!r}].to_numpy()
result = pd.DataFrame({{"id": df["id"], "label": model.predict(x)}})
result["probabilities"] = list(model.predict_proba(x))
result.to_json(out, orient="records", lines=True)
"""


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one run."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {proc.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    h, m, s = wall.groups()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return int(h or 0) * 3600 + int(m) * 60 + float(s), int(rss.group(1)) / 1024


def main() -> int:
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    ap.add_argument("--server-bin", default=f"{target}/release/modelship-server")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    random.seed(1)
    flowers = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1]]
    csv = tmp / "iris.csv"
    with csv.open("w") as f:
        f.write("id," + ",".join(FEATURES) + "\n")
        for i in range(args.rows):
            f.write(f"{i}," + ",".join("%.1f" % (x + random.uniform(-0.3, 0.3)) for x in flowers[i % 3]) + "\n")
    parquet = tmp / "iris.parquet"
    pq.write_table(pacsv.read_csv(csv), parquet, row_group_size=100_000)
    baseline = tmp / "baseline.py"
    baseline.write_text(BASELINE.format(models=str(ROOT / "models"), features=FEATURES))
    rows = []
    for name, src in [("CSV", csv), ("Parquet", parquet)]:
        for tool in ["modelship", "pandas"]:
            runs = []
            for r in range(args.repeats):
                out = tmp / f"out-{tool}-{name}-{r}"
                if tool == "modelship":
                    cmd = [args.server_bin, "predict", "--model", "builtin://iris", "--runtime", "tract", "--input", str(src),
                           "--output", str(out), "--shard", "0/1", "--run-id", f"bench-{r}", "--keep-columns", "id",
                           "--log", "warn"]
                else:
                    cmd = [sys.executable, str(baseline), str(src), str(out) + ".jsonl"]
                runs.append(timed(cmd))
            wall = sorted(w for w, _ in runs)[len(runs) // 2]
            rss = max(m for _, m in runs)
            rows.append((name, tool, wall, args.rows / wall, rss, [w for w, _ in runs]))
    print(f"| input | tool | wall (median of {args.repeats}) | rows/s | peak RSS | runs |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for name, tool, wall, rate, rss, runs in rows:
        label = "`modelship-server predict` (one shard, tract)" if tool == "modelship" else "pandas + scikit-learn"
        print(f"| {name} | {label} | {wall:.2f} s | {rate:,.0f} | {rss:.0f} MiB | {', '.join(f'{w:.2f}' for w in runs)} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
