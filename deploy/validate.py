#!/usr/bin/env python3
"""Offline check of the kustomize trees in deploy/: render, validate against the Kubernetes
OpenAPI schemas bundled with `kubernetes-validate` (pip install kubernetes-validate), and check
what pmi needs from a pod.

Usage: python3 deploy/validate.py [--k8s-version 1.30.0] DIR...

Rendering covers the kustomize features these trees use (no kustomize binary is needed):
`resources` (files and directories), `images` (newName/newTag) and `patches` with a strategic
merge patch (maps merge, lists of named objects merge by name, `null` deletes a key).
"""
import argparse
import copy
import os
import sys

import kubernetes_validate
import yaml

# pmi's stop after the largest kill_timeout: stray grace (1.6 s) + last output flushed (2 s).
PMI_STOP_OVERHEAD_S = 3.6


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = merge(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
        return out
    named = lambda xs: isinstance(xs, list) and all(isinstance(x, dict) and "name" in x for x in xs)
    if named(base) and named(patch):
        out = [copy.deepcopy(x) for x in base]
        for p in patch:
            i = next((i for i, x in enumerate(out) if x["name"] == p["name"]), None)
            if i is None:
                out.append(copy.deepcopy(p))
            else:
                out[i] = merge(out[i], p)
        return out
    return copy.deepcopy(patch)


def render(directory):
    kust = load_docs(os.path.join(directory, "kustomization.yaml"))[0]
    assert kust.get("kind") == "Kustomization", f"{directory}: not a Kustomization"
    docs = []
    for r in kust.get("resources", []):
        p = os.path.join(directory, r)
        docs += render(p) if os.path.isdir(p) else load_docs(p)
    for patch in kust.get("patches", []):
        for pd in load_docs(os.path.join(directory, patch["path"])):
            key = (pd["kind"], pd["metadata"]["name"])
            hits = [i for i, d in enumerate(docs) if (d["kind"], d["metadata"]["name"]) == key]
            assert hits, f"{directory}: patch {patch['path']} matches no resource {key}"
            for i in hits:
                docs[i] = merge(docs[i], pd)
    for img in kust.get("images", []):
        for d in docs:
            for c in containers(d):
                name, _, _ = c["image"].partition(":")
                if name == img["name"]:
                    c["image"] = f"{img.get('newName', name)}:{img.get('newTag', 'latest')}"
    return docs


def containers(doc):
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", [])


def check_pmi(doc, configmaps, errors):
    """What pmi needs from a pod running it, beyond schema validity."""
    where = f"{doc['kind']}/{doc['metadata']['name']}"
    pod = doc["spec"]["template"]
    spec = pod["spec"]
    need = lambda cond, msg: cond or errors.append(f"{where}: {msg}")
    need(spec.get("securityContext", {}).get("runAsNonRoot") is True, "runAsNonRoot: true")
    need(isinstance(spec.get("securityContext", {}).get("runAsUser"), int), "a numeric runAsUser")
    ann = pod.get("metadata", {}).get("annotations", {})
    need(ann.get("prometheus.io/scrape") == "true", "prometheus.io/scrape annotation")
    for c in spec["containers"]:
        need(c.get("securityContext", {}).get("readOnlyRootFilesystem") is True,
             f"container {c['name']}: readOnlyRootFilesystem: true")
        need("livenessProbe" in c and "readinessProbe" in c, f"container {c['name']}: probes")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        sock = [p for p in ("/run", "/run/pmi", "/tmp") if p in mounts and "emptyDir" in vols.get(mounts[p], {})]
        need(sock, f"container {c['name']}: an emptyDir at /run (or /run/pmi, /tmp) for the socket")
        for probe in ("livenessProbe", "readinessProbe"):
            p = c.get(probe, {})
            if "exec" in p:
                need(p["exec"]["command"][0] == "pmi", f"{probe}: exec pmi health")
            elif "httpGet" in p:
                need(p["httpGet"]["path"] in ("/livez", "/healthz", "/readyz"), f"{probe}: path")
        # The grace period must cover the slowest app's kill_timeout plus pmi's own stop work.
        timeouts = []
        for v in spec.get("volumes", []):
            cm = configmaps.get(v.get("configMap", {}).get("name"))
            for text in (cm or {}).get("data", {}).values():
                apps = yaml.safe_load(text).get("apps", [])
                timeouts += [a.get("kill_timeout", 1600) for a in apps]
        pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        budget = max(timeouts, default=1600) / 1000 + PMI_STOP_OVERHEAD_S + pre
        grace = spec.get("terminationGracePeriodSeconds", 30)
        need(grace >= budget, f"terminationGracePeriodSeconds {grace} < stop budget {budget:.1f} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k8s-version", default="1.30.0")
    ap.add_argument("dirs", nargs="+")
    args = ap.parse_args()
    errors = []
    for d in args.dirs:
        docs = render(d)
        configmaps = {x["metadata"]["name"]: x for x in docs if x["kind"] == "ConfigMap"}
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, args.k8s_version, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{d}: {doc['kind']}/{doc['metadata']['name']}: {e.message} at {list(e.path)}")
            if doc["kind"] == "Deployment":
                check_pmi(doc, configmaps, errors)
        kinds = sorted(f"{x['kind']}/{x['metadata']['name']}" for x in docs)
        print(f"{d}: {', '.join(kinds)}")
    for e in errors:
        print("error:", e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
