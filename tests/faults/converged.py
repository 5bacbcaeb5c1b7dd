"""Is every ModelDeployment of a namespace converged? Reads `kubectl get -o json`.

    kubectl get mdep,deployments,services,poddisruptionbudgets -n NS -o json | python3 converged.py

Converged: each ModelDeployment has its Deployment, Service (and, with 2 or
more replicas, its PodDisruptionBudget), each owned by it (its UID) and
carrying the spec's values (replicas, model version); its status describes
this generation and this spec (observedGeneration, status.model) with
conditions true to its pods (Ready when its pods are, ScaledToZero at 0);
and no child of the operator is left without a live owner, nor twice.
Prints one line of counts; exits 1 with the first problems otherwise.
"""

import collections
import json
import sys


def condition(md, type_):
    for c in md.get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return c["status"], c.get("reason", "")
    return None, None


def env_of(deployment):
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in containers[0].get("env", [])}


def check(items):
    by_kind = collections.defaultdict(dict)
    problems = []
    for item in items:
        name = item["metadata"]["name"]
        if name in by_kind[item["kind"]]:
            problems.append(f"{item['kind']} {name} listed twice")
        by_kind[item["kind"]][name] = item
    mds = by_kind["ModelDeployment"]
    uids = {md["metadata"]["uid"] for md in mds.values()}
    for name, md in mds.items():
        spec, status, meta = md["spec"], md.get("status", {}), md["metadata"]
        uid = meta["uid"]
        replicas = spec.get("replicas", 1)
        if status.get("observedGeneration") != meta["generation"]:
            problems.append(f"{name}: observedGeneration {status.get('observedGeneration')} != generation {meta['generation']}")
        if status.get("model", {}).get("version") != spec["model"].get("version"):
            problems.append(f"{name}: status.model.version {status.get('model', {}).get('version')!r} is not the spec's {spec['model'].get('version')!r}")
        ready = condition(md, "Ready")
        want = ("False", "ScaledToZero") if replicas == 0 else ("True", "ModelServing")
        if ready != want:
            problems.append(f"{name}: Ready is {ready}, want {want}")
        if condition(md, "Degraded")[0] != "False":
            problems.append(f"{name}: Degraded is {condition(md, 'Degraded')}")
        want_kinds = ["Deployment", "Service"] + (["PodDisruptionBudget"] if replicas >= 2 else [])
        for kind in want_kinds:
            child = by_kind[kind].get(name)
            if child is None:
                problems.append(f"{name}: no {kind}")
                continue
            owners = [o["uid"] for o in child["metadata"].get("ownerReferences", []) if o.get("controller")]
            if owners != [uid]:
                problems.append(f"{name}: {kind} owned by {owners}, not {uid}")
        deployment = by_kind["Deployment"].get(name)
        if deployment:
            if deployment["spec"].get("replicas") != replicas:
                problems.append(f"{name}: Deployment replicas {deployment['spec'].get('replicas')} != {replicas}")
            version = env_of(deployment).get("MODELSHIP_MODEL_VERSION")
            if version != spec["model"].get("version"):
                problems.append(f"{name}: Deployment serves version {version!r}, spec says {spec['model'].get('version')!r}")
        if replicas < 2 and name in by_kind["PodDisruptionBudget"]:
            problems.append(f"{name}: a PodDisruptionBudget with {replicas} replicas")
    children = 0
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        for name, child in by_kind[kind].items():
            labels = child["metadata"].get("labels", {})
            if labels.get("app.kubernetes.io/managed-by") != "modelship-operator":
                continue
            children += 1
            owners = [o["uid"] for o in child["metadata"].get("ownerReferences", [])]
            if not owners:
                problems.append(f"{kind} {name}: no owner")
            elif not set(owners) & uids:
                problems.append(f"{kind} {name}: orphaned (owner {owners} gone)")
    print(f"converged check: {len(mds)} ModelDeployments, {children} children, {len(problems)} problems")
    return problems


def main():
    problems = check(json.load(sys.stdin)["items"])
    for p in problems[:15]:
        print("  " + p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
