"""The CronJob's pod, runnable by `podman kube play` (scripts/check-image.sh).

podman kube play (4.3) runs Pods, not CronJobs or Jobs. This takes the CronJob's
jobTemplate.spec.template from k8s/ exactly as shipped (container command and args, env, envFrom,
mounts, volumes, securityContext, grace period) and changes only what ties it to a cluster:

  - kind Pod, named market-encoder-check, hostNetwork (PostgreSQL, Chroma and the fake Yahoo
    listen on this machine's loopback), the image the check built (imagePullPolicy Never);
  - the market-encoder-env ConfigMap: every key it ships with gets this machine's value (a key
    this script does not know fails: a new setting must be given a local value here), plus
    YAHOO_BASE_URL (the fake Yahoo);
  - the market-encoder-secrets Secret: written as the JSON object of base64 values that podman
    4.3 reads for envFrom.secretRef (a kind: Secret in the played YAML breaks secretRef there).

The securities ConfigMap (market-encoder-config) is the shipped one, unchanged.

usage: pod-from-cronjob.py K8S_DIR OUT_DIR IMAGE   (the local values come from the environment:
       CHECK_DB_HOST CHECK_DB_PORT CHECK_DB_NAME CHECK_DB_USER CHECK_DB_PASSWORD CHECK_CHROMA_URL
       CHECK_CHROMA_COLLECTION CHECK_YAHOO_BASE_URL)
Writes OUT_DIR/pod.yaml, OUT_DIR/configmap-NAME.yaml (one per ConfigMap), OUT_DIR/secret.json.
"""

import base64
import json
import os
import sys

import yaml

POD_NAME = "market-encoder-check"
ENV_CONFIGMAP = "market-encoder-env"
SECRETS = "market-encoder-secrets"


def documents(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def fail(message):
    print(f"pod-from-cronjob: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 4:
        fail("usage: pod-from-cronjob.py K8S_DIR OUT_DIR IMAGE")
    k8s, out, image = sys.argv[1:]
    cronjobs = [d for d in documents(os.path.join(k8s, "market-encoder-cronjob.yaml")) if d.get("kind") == "CronJob"]
    if len(cronjobs) != 1:
        fail(f"expected one CronJob in {k8s}/market-encoder-cronjob.yaml, found {len(cronjobs)}")
    template = cronjobs[0]["spec"]["jobTemplate"]["spec"]["template"]
    spec = template["spec"]
    spec["hostNetwork"] = True
    containers = spec.get("containers") or []
    if len(containers) != 1:
        fail(f"expected one container in the CronJob's pod, found {len(containers)}")
    containers[0]["image"] = image
    containers[0]["imagePullPolicy"] = "Never"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD_NAME, "labels": template.get("metadata", {}).get("labels", {})},
        "spec": spec,
    }

    config = documents(os.path.join(k8s, "market-encoder-config.yaml"))
    local = {
        "DB_HOST": os.environ["CHECK_DB_HOST"],
        "DB_PORT": os.environ["CHECK_DB_PORT"],
        "DB_NAME": os.environ["CHECK_DB_NAME"],
        "CHROMA_URL": os.environ["CHECK_CHROMA_URL"],
        "CHROMA_COLLECTION": os.environ["CHECK_CHROMA_COLLECTION"],
        "DB_USER": os.environ["CHECK_DB_USER"],
        "DB_PASSWORD": os.environ["CHECK_DB_PASSWORD"],
        # A Chroma without auth (the local one) ignores the token.
        "CHROMA_TOKEN": "unused-by-a-chroma-without-auth",
    }
    configmaps, secret = [], None
    for doc in config:
        name = doc.get("metadata", {}).get("name")
        if doc.get("kind") == "ConfigMap" and name == ENV_CONFIGMAP:
            unknown = sorted(set(doc.get("data", {})) - set(local))
            if unknown:
                fail(f"{ENV_CONFIGMAP} has keys this check gives no local value: {', '.join(unknown)}")
            doc["data"] = {k: local[k] for k in doc["data"]}
            doc["data"]["YAHOO_BASE_URL"] = os.environ["CHECK_YAHOO_BASE_URL"]
            configmaps.append(doc)
        elif doc.get("kind") == "ConfigMap":
            configmaps.append(doc)
        elif doc.get("kind") == "Secret" and name == SECRETS:
            keys = sorted(set(doc.get("stringData", {})) | set(doc.get("data", {})))
            unknown = [k for k in keys if k not in local]
            if unknown:
                fail(f"{SECRETS} has keys this check gives no local value: {', '.join(unknown)}")
            secret = {k: base64.b64encode(local[k].encode()).decode() for k in keys}
    if secret is None:
        fail(f"no Secret {SECRETS} in {k8s}/market-encoder-config.yaml")
    if not any(d["metadata"]["name"] == ENV_CONFIGMAP for d in configmaps):
        fail(f"no ConfigMap {ENV_CONFIGMAP} in {k8s}/market-encoder-config.yaml")

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "pod.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(pod, f, sort_keys=False)
    # One file per ConfigMap: podman kube play --configmap reads the first document of a file.
    for doc in configmaps:
        with open(os.path.join(out, f"configmap-{doc['metadata']['name']}.yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
    with open(os.path.join(out, "secret.json"), "w", encoding="utf-8") as f:
        json.dump(secret, f)


if __name__ == "__main__":
    main()
