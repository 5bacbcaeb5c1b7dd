#!/usr/bin/env python3
"""Traffic and queries for the monitoring suite (tests/monitoring/monitoring.sh).

    traffic.py infer URL N OUT [--shift-petal-length CM] [--seed S] [--key K]
        N one-row Iris inferences to URL (a model's v2 base, e.g.
        http://SERVICE_IP/v2/models/iris), each on a new connection so that
        kube-proxy balances every request; rows drawn from the Iris data set
        (scikit-learn's copy, the training data of the demo model), petal
        length shifted by CM. Writes OUT: [{"id", "predicted"}], the server's
        inference id (x-modelship-inference-id) and the predicted class index.
        Fails unless every inference answers 200 with an id.

    traffic.py feedback URL IDS WRONG [--batch B] [--key K]
        Feedback for every inference in IDS (an OUT of infer), by id only, in
        batches of B through URL: the first WRONG items get a wrong truth,
        the rest the predicted class. Prints the summed answer counts as JSON.

    traffic.py post URL JSON [--key K]
        One POST; prints {"status": code, "body": parsed JSON}.

    traffic.py query PROMETHEUS PROMQL
        An instant query; prints the result vector as JSON.

Standard library only, apart from scikit-learn for the Iris rows.
"""

import argparse
import http.client
import json
import random
import sys
import urllib.parse
import urllib.request

ID_HEADER = "x-modelship-inference-id"


def post(url, body, key=None):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=20)
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    try:
        conn.request("POST", parts.path, json.dumps(body).encode(), headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data
    finally:
        conn.close()


def input_name(url, key=None):
    req = urllib.request.Request(url)
    if key:
        req.add_header("authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=20) as resp:
        return json.load(resp)["inputs"][0]["name"]


def infer(args):
    from sklearn.datasets import load_iris

    rows = load_iris().data.tolist()
    rng = random.Random(args.seed)
    name = input_name(args.url, args.key)
    out = []
    for _ in range(args.n):
        row = list(rng.choice(rows))
        row[2] += args.shift_petal_length
        body = {"inputs": [{"name": name, "datatype": "FP32", "shape": [1, 4], "data": row}]}
        status, headers, data = post(args.url + "/infer", body, args.key)
        if status != 200:
            sys.exit(f"inference answered {status}: {data[:300]!r}")
        if ID_HEADER not in headers:
            sys.exit(f"no {ID_HEADER} header in {headers}")
        answer = json.loads(data)
        label = next(o for o in answer["outputs"] if o["name"] == "label")
        out.append({"id": headers[ID_HEADER], "predicted": int(label["data"][0])})
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(json.dumps({"inferences": len(out), "distinct_ids": len({o["id"] for o in out})}))


def feedback(args):
    with open(args.ids) as f:
        inferences = json.load(f)
    items = []
    for i, inf in enumerate(inferences):
        truth = (inf["predicted"] + 1) % 3 if i < args.wrong else inf["predicted"]
        items.append({"id": inf["id"], "truth": [truth]})
    totals = {}
    for start in range(0, len(items), args.batch):
        status, _, data = post(args.url + "/feedback", {"items": items[start : start + args.batch]}, args.key)
        if status != 200:
            sys.exit(f"feedback answered {status}: {data[:300]!r}")
        for k, v in json.loads(data).items():
            if isinstance(v, int):
                totals[k] = totals.get(k, 0) + v
    print(json.dumps(totals))


def post_cmd(args):
    status, _, data = post(args.url, json.loads(args.json), args.key)
    try:
        body = json.loads(data)
    except ValueError:
        body = data.decode(errors="replace")
    print(json.dumps({"status": status, "body": body}))


def query(args):
    url = args.prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": args.promql})
    with urllib.request.urlopen(url, timeout=20) as resp:
        answer = json.load(resp)
    if answer.get("status") != "success":
        sys.exit(f"query failed: {answer}")
    print(json.dumps(answer["data"]["result"]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("infer")
    i.add_argument("url")
    i.add_argument("n", type=int)
    i.add_argument("out")
    i.add_argument("--shift-petal-length", type=float, default=0.0)
    i.add_argument("--seed", type=int, default=12)
    i.add_argument("--key")
    f = sub.add_parser("feedback")
    f.add_argument("url")
    f.add_argument("ids")
    f.add_argument("wrong", type=int)
    f.add_argument("--batch", type=int, default=50)
    f.add_argument("--key")
    o = sub.add_parser("post")
    o.add_argument("url")
    o.add_argument("json")
    o.add_argument("--key")
    q = sub.add_parser("query")
    q.add_argument("prometheus")
    q.add_argument("promql")
    args = p.parse_args()
    {"infer": infer, "feedback": feedback, "post": post_cmd, "query": query}[args.cmd](args)


if __name__ == "__main__":
    main()
