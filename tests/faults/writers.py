""""No two writers", from the API server's audit log.

    python3 writers.py AUDIT_LOG USER CUT_IP CUT_START CUT_END LEASE_SECONDS

USER is the operator's service account (system:serviceaccount:NS:NAME),
CUT_IP the address of the replica whose traffic was cut between CUT_START and
CUT_END (RFC 3339). From the successful writes (create, update, patch,
delete answered below 400) of USER, by source address:

- the cut replica's Lease ran out LEASE_SECONDS after its last successful
  write before the cut ended (its last renewal, or anything later);
- no write of the cut replica lands after that, to the end of the log
  (after the cut it stands by and writes nothing);
- the other replica's first write after the cut started lands after the
  cut one's last write: the two never write in the same period.

Prints the figures as MEASURED lines; exits 1 on a violation.
"""

import datetime
import json
import sys


def ts(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def main():
    log, user, cut_ip, cut_start, cut_end, lease = sys.argv[1:7]
    cut_start, cut_end, lease = ts(cut_start), ts(cut_end), float(lease)
    writes = []
    for line in open(log, encoding="utf-8"):
        e = json.loads(line)
        if e.get("stage") != "ResponseComplete" or e["user"].get("username") != user:
            continue
        if e["verb"] not in ("create", "update", "patch", "delete", "deletecollection"):
            continue
        if e.get("responseStatus", {}).get("code", 500) >= 400:
            continue
        ref = e.get("objectRef", {})
        what = f"{e['verb']} {ref.get('resource')}/{ref.get('name', '')}"
        writes.append((ts(e["stageTimestamp"]), e["sourceIPs"][0], what))
    writes.sort()
    ips = sorted({ip for _, ip, _ in writes})
    print(f"MEASURED writes by {user}: {len(writes)} from {len(ips)} addresses {ips}")
    cut = [w for w in writes if w[1] == cut_ip]
    others = [w for w in writes if w[1] != cut_ip and w[0] >= cut_start]
    if not cut:
        print(f"FAILED: no write from the cut replica {cut_ip} at all: the wrong address?")
        return 1
    if not others:
        print("FAILED: the other replica never wrote after the cut: no takeover")
        return 1
    before = [w for w in cut if w[0] <= cut_end]
    last_ok = before[-1][0]
    ran_out = last_ok + datetime.timedelta(seconds=lease)
    late = [w for w in cut if w[0] > ran_out]
    print(f"MEASURED cut replica {cut_ip}: last write {last_ok.isoformat()} ({(last_ok - cut_start).total_seconds():+.1f} s from the cut), Lease ran out {ran_out.isoformat()}")
    first_other = others[0]
    print(f"MEASURED other replica: first write {first_other[0].isoformat()} ({(first_other[0] - cut_start).total_seconds():+.1f} s from the cut, {(first_other[0] - last_ok).total_seconds():.1f} s after the cut one's last), {len(others)} writes since ({first_other[2]})")
    status = 0
    if late:
        print(f"FAILED: {len(late)} writes of the cut replica after its Lease ran out, first: {late[0]}")
        status = 1
    if first_other[0] <= last_ok:
        print(f"FAILED: two writers: {first_other} before the cut replica's last write {before[-1]}")
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
