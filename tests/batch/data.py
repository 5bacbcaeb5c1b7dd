"""Data for the batch suite (tests/batch/batch.sh): generated with numpy/pyarrow, put into the
cluster's S3 server (versitygw) from the host with boto3, and the results read back and checked.

    data.py csv DIR ROWS FILES              ROWS rows with a unique id over FILES CSV files
    data.py parquet FILE ROWS ROW_GROUP     one Parquet file, row groups of ROW_GROUP rows
    data.py put BUCKET PREFIX PATH...       upload files (into a bucket made when missing)
    data.py put-text BUCKET KEY TEXT        one small object
    data.py check BUCKET PREFIX ROWS LOCAL  every id 0..ROWS-1 exactly once in the parts, and
                                            every row equal to its row in LOCAL (local
                                            `modelship-server predict` of the whole input)
    data.py ids BUCKET PREFIX               print how many rows and distinct ids the parts hold
    data.py get BUCKET KEY                  print an object
    data.py skipped BUCKET PREFIX           the manifest's skipped total and FILE:LINEs, then the reports'

The host reaches the server at $MODELSHIP_S3_ENDPOINT with $MODELSHIP_S3_ACCESS_KEY and
$MODELSHIP_S3_SECRET_KEY (hack/cluster/cluster.sh s3-env prints them).
"""

import io
import json
import os
import sys

import boto3
import numpy as np

# The builtin iris model's feature names: with them in the header, the other columns may be kept.
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def s3():
    return boto3.client(
        "s3",
        endpoint_url=os.environ["MODELSHIP_S3_ENDPOINT"],
        aws_access_key_id=os.environ["MODELSHIP_S3_ACCESS_KEY"],
        aws_secret_access_key=os.environ["MODELSHIP_S3_SECRET_KEY"],
        region_name=os.environ.get("MODELSHIP_S3_REGION", "us-east-1"),
    )


def features(rows, seed=7):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.1, 7.9, (rows, 4)).round(2)


def write_csv(path, ids, x):
    # The customer column is carried by keepColumns; it is text, so it is quoted now and then.
    with open(path, "w") as f:
        f.write("id,customer," + ",".join(FEATURES) + "\n")
        body = np.column_stack([ids, ids % 1000, x])
        np.savetxt(f, body, fmt=["%d", "c%d", "%.2f", "%.2f", "%.2f", "%.2f"], delimiter=",")


def cmd_csv(out_dir, rows, files):
    rows, files = int(rows), int(files)
    os.makedirs(out_dir, exist_ok=True)
    x = features(rows)
    ids = np.arange(rows)
    for i, part in enumerate(np.array_split(np.arange(rows), files)):
        write_csv(os.path.join(out_dir, f"day-{i}.csv"), ids[part], x[part])


def cmd_parquet(path, rows, row_group):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = int(rows)
    x = features(rows, seed=11)
    ids = np.arange(rows)
    table = pa.table(
        {"id": ids, "customer": [f"c{i % 1000}" for i in ids]}
        | {name: x[:, j] for j, name in enumerate(FEATURES)}
    )
    pq.write_table(table, path, row_group_size=int(row_group))
    print(f"{path}: {pq.ParquetFile(path).num_row_groups} row groups")


def ensure_bucket(client, bucket):
    names = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
    if bucket not in names:
        client.create_bucket(Bucket=bucket)


def cmd_put(bucket, prefix, *paths):
    client = s3()
    ensure_bucket(client, bucket)
    for path in paths:
        client.upload_file(path, bucket, prefix + os.path.basename(path))


def cmd_put_text(bucket, key, text):
    client = s3()
    ensure_bucket(client, bucket)
    client.put_object(Bucket=bucket, Key=key, Body=text.encode())


def keys(client, bucket, prefix):
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return sorted(out)


def part_rows(client, bucket, prefix):
    """Every row of every part under the prefix, in part order."""
    parts = [k for k in keys(client, bucket, prefix) if k[len(prefix):].startswith("part-")]
    rows = []
    for key in parts:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        if key.endswith(".parquet"):
            import pyarrow.parquet as pq

            rows += pq.read_table(io.BytesIO(body)).to_pylist()
        else:
            rows += [json.loads(line) for line in body.splitlines() if line.strip()]
    return parts, rows


def comparable(row):
    """A row without its position (`row` counts within a part, not across the input), its kept
    columns as text (a CSV input keeps them as text, a Parquet one as typed)."""
    return {k: (str(v) if k in ("id", "customer") else v) for k, v in row.items() if k != "row"}


def cmd_check(bucket, prefix, rows, local):
    rows = int(rows)
    client = s3()
    parts, got = part_rows(client, bucket, prefix)
    ids = [int(r["id"]) for r in got]
    dupes = len(ids) - len(set(ids))
    missing = rows - len(set(ids) & set(range(rows)))
    print(f"{len(parts)} parts, {len(got)} rows, {dupes} duplicate ids, {missing} missing ids")
    assert dupes == 0 and missing == 0 and len(got) == rows, "every id exactly once"
    expected = {}
    with open(local) as f:
        for line in f:
            r = json.loads(line)
            expected[int(r["id"])] = comparable(r)
    assert len(expected) == rows, f"local predict gave {len(expected)} rows, not {rows}"
    compared = got
    wrong = [r for r in compared if comparable(r) != expected[int(r["id"])]]
    assert not wrong, f"{len(wrong)} rows differ from local predict, e.g. {wrong[0]} vs {expected[int(wrong[0]['id'])]}"
    assert all(str(r["customer"]).startswith("c") for r in got[:1000]), "keepColumns carried"
    manifest = json.loads(client.get_object(Bucket=bucket, Key=prefix + "_manifest.json")["Body"].read())
    print("manifest:", json.dumps(manifest)[:400])
    print(f"every id exactly once; all {len(compared)} rows as local predict gives them; customer kept")


def cmd_ids(bucket, prefix):
    parts, got = part_rows(s3(), bucket, prefix)
    ids = [int(r["id"]) for r in got]
    print(len(parts), len(ids), len(set(ids)))


def cmd_get(bucket, key):
    sys.stdout.write(s3().get_object(Bucket=bucket, Key=key)["Body"].read().decode())


def cmd_skipped(bucket, prefix):
    """The manifest's and the reports' skipped rows: `TOTAL FILE:LINE...`."""
    client = s3()
    manifest = json.loads(client.get_object(Bucket=bucket, Key=prefix + "_manifest.json")["Body"].read())
    listed = manifest.get("skippedRows", manifest.get("skipped_rows", []))
    lines = [f"{os.path.basename(r['file'])}:{r.get('line')}" for r in listed]
    reports = [k for k in keys(client, bucket, prefix + "_reports/")]
    in_reports = []
    for key in reports:
        report = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        for r in report.get("skippedRows", report.get("skipped_rows", [])):
            in_reports.append(f"{os.path.basename(r['file'])}:{r.get('line')}")
    print(manifest["rows"]["skipped"], " ".join(lines), "|", " ".join(in_reports))


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    globals()["cmd_" + name.replace("-", "_")](*args)

