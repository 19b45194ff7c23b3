"""The ServiceAccount admission plugin for pod creates (Kubernetes:
``plugin/pkg/admission/serviceaccount/admission.go``).

Role, for a pod being created:
1. a mirror pod (annotation ``kubernetes.io/config.mirror``) is left unchanged, and refused if it
   names a ServiceAccount, references a Secret or projects a ServiceAccount token;
2. ``spec.serviceAccountName`` defaults to ``default`` (``spec.serviceAccount``, the deprecated
   alias, is read when the new field is empty and always mirrors it, as the v1 conversion does);
3. the ServiceAccount must exist: ``pods "web" is forbidden: error looking up service account
   default/builder: serviceaccount "builder" not found`` (403). ``default`` is looked up 10 times,
   100–200 ms apart, because the ServiceAccount controller may not have made it yet in a new
   namespace; any other name once;
4. unless ``automountServiceAccountToken: false`` on the pod (which wins) or the ServiceAccount,
   the projected volume ``kube-api-access-<5 chars>`` (a bound token of 3607 s, ``ca.crt`` from the
   ``kube-root-ca.crt`` ConfigMap, the namespace) is added, mounted read-only at
   ``/var/run/secrets/kubernetes.io/serviceaccount`` in every init container and container that
   does not mount something there already;
5. a pod without ``imagePullSecrets`` gets the ServiceAccount's.

Pure apart from the ``lookup`` callable; the retries sleep, so the caller must not be an event loop.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from controlplane.api import errors

DEFAULT_SERVICE_ACCOUNT = "default"
VOLUME_PREFIX = "kube-api-access-"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
#: kube-apiserver's WarnOnlyBoundTokenExpirationSeconds: an hour and a few seconds, so a token of
#: this lifetime is recognisable as one the admission plugin asked for.
TOKEN_EXPIRATION_SECONDS = 3607
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
DEFAULT_ATTEMPTS = 10
# apiserver/pkg/storage/names SimpleNameGenerator's alphabet (no vowels, no 0/1/3).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

Lookup = Callable[[str, str], dict[str, Any] | None]  # (namespace, name) -> ServiceAccount or None


def token_volume_source() -> dict[str, Any]:
    """The projected source of ``kube-api-access-*`` (``TokenVolumeSource`` in admission.go)."""
    return {
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
            {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {
                "downwardAPI": {
                    "items": [
                        {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                    ]
                }
            },
        ],
        "defaultMode": 0o644,
    }


def mirror_deprecated_field(pod: dict[str, Any]) -> None:
    """``spec.serviceAccount`` is an alias of ``spec.serviceAccountName``; the new field wins."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    if not spec.get("serviceAccountName") and spec.get("serviceAccount"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    if spec.get("serviceAccountName"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    else:
        spec.pop("serviceAccount", None)


def _forbidden(pod: dict[str, Any], message: str) -> errors.Forbidden:
    md = pod.get("metadata") or {}
    # admission.NewForbidden names the object by name, else by generateName, else "Unknown". In
    # Kubernetes this plugin runs before the name is generated; here the generated name (generateName
    # plus 5 characters) is already set, so it is recognised and the generateName reported.
    gen, name = str(md.get("generateName") or ""), str(md.get("name") or "")
    if gen and name.startswith(gen) and len(name) == len(gen) + 5:
        name = gen
    name = name or gen or "Unknown"
    return errors.Forbidden(f'pods "{name}" is forbidden: {message}', kind="pods", name=name)


def _check_mirror_pod(pod: dict[str, Any]) -> None:
    spec = pod.get("spec") or {}
    if spec.get("serviceAccountName"):
        raise _forbidden(pod, "a mirror pod may not reference service accounts")
    for v in spec.get("volumes") or []:
        if isinstance(v, dict) and "secret" in v:
            raise _forbidden(pod, "a mirror pod may not reference secrets")
        for src in ((v.get("projected") or {}).get("sources") or []) if isinstance(v, dict) else []:
            if isinstance(src, dict) and "secret" in src:
                raise _forbidden(pod, "a mirror pod may not reference secrets")
            if isinstance(src, dict) and "serviceAccountToken" in src:
                raise _forbidden(pod, "a mirror pod may not use ServiceAccountToken volume projections")
    for field in ("initContainers", "containers"):
        for c in spec.get(field) or []:
            for env in (c.get("env") or []) if isinstance(c, dict) else []:
                if isinstance(env, dict) and ((env.get("valueFrom") or {}).get("secretKeyRef")):
                    raise _forbidden(pod, "a mirror pod may not reference secrets")
            for ef in (c.get("envFrom") or []) if isinstance(c, dict) else []:
                if isinstance(ef, dict) and ef.get("secretRef"):
                    raise _forbidden(pod, "a mirror pod may not reference secrets")
    if spec.get("imagePullSecrets"):
        raise _forbidden(pod, "a mirror pod may not reference secrets")


def get_service_account(
    lookup: Lookup, namespace: str, name: str, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any] | None:
    """The ServiceAccount, retrying ``default`` as admission.go's ``getServiceAccount`` does."""
    attempts = DEFAULT_ATTEMPTS if name == DEFAULT_SERVICE_ACCOUNT else 1
    interval = (100 + random.randrange(100)) / 1000.0
    for i in range(attempts):
        if i:
            sleep(interval)
        sa = lookup(namespace, name)
        if sa is not None:
            return sa
    return None


def _should_automount(sa: dict[str, Any], spec: dict[str, Any]) -> bool:
    if spec.get("automountServiceAccountToken") is not None:
        return bool(spec["automountServiceAccountToken"])  # the pod's preference wins
    if sa.get("automountServiceAccountToken") is not None:
        return bool(sa["automountServiceAccountToken"])
    return True


def mount_token_volume(spec: dict[str, Any], suffix: str | None = None) -> None:
    """Add the ``kube-api-access-*`` volume and its mounts (``mountServiceAccountToken``)."""
    volumes = spec.get("volumes") or []
    existing = next(
        (v["name"] for v in volumes if isinstance(v, dict) and str(v.get("name", "")).startswith(VOLUME_PREFIX)), None
    )
    name = existing or VOLUME_PREFIX + (suffix or "".join(random.choices(_NAME_ALPHABET, k=5)))
    mount = {"name": name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH}
    needs_volume = False
    for field in ("initContainers", "containers"):
        for c in spec.get(field) or []:
            if not isinstance(c, dict):
                continue
            mounts = c.get("volumeMounts") or []
            if any(isinstance(m, dict) and m.get("mountPath") == TOKEN_MOUNT_PATH for m in mounts):
                continue  # an explicit mount at the path keeps the token out
            c["volumeMounts"] = [*mounts, dict(mount)]
            needs_volume = True
    if existing is None and needs_volume:
        spec["volumes"] = [*volumes, {"name": name, "projected": token_volume_source()}]


def admit_pod(pod: dict[str, Any], lookup: Lookup, sleep: Callable[[float], None] = time.sleep) -> None:
    """Mutate and check a pod being created; raises ``errors.Forbidden`` when it may not be."""
    md = pod.get("metadata") or {}
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    mirror_deprecated_field(pod)
    if MIRROR_ANNOTATION in (md.get("annotations") or {}):
        _check_mirror_pod(pod)
        return
    name = spec.get("serviceAccountName") or DEFAULT_SERVICE_ACCOUNT
    spec["serviceAccountName"] = spec["serviceAccount"] = name
    namespace = str(md.get("namespace") or "")
    sa = get_service_account(lookup, namespace, name, sleep)
    if sa is None:
        raise _forbidden(pod, f'error looking up service account {namespace}/{name}: serviceaccount "{name}" not found')
    if _should_automount(sa, spec):
        mount_token_volume(spec)
    if not spec.get("imagePullSecrets") and sa.get("imagePullSecrets"):
        spec["imagePullSecrets"] = [{"name": s.get("name", "")} for s in sa["imagePullSecrets"] if isinstance(s, dict)]
