"""The API server's field manager: ``managedFields`` kept on every write (server-side apply).

Role: the glue between ``ResourceOps`` and the pure ``controlplane.api.managedfields`` — what
k8s.io/apiserver ``pkg/endpoints/handlers/fieldmanager`` (``managedfields/internal``) does around
structured-merge-diff: the manager of a request (``fieldManager``, else the User-Agent's prefix),
``managedFields`` a client sends (kept: kubectl's client-side→server-side apply upgrade rewrites
them with a JSON patch; ``[]`` resets them), Update entries for non-apply writers, Apply with its
409 conflicts, and the last-applied annotation kept in step (internal/lastappliedupdater.go).

Invariants: objects handed in are not mutated except the one being written (``obj``); a write
with no manager (in-process callers) leaves the entries as they are. Pure functions of their
arguments plus the clock; thread-safe.
"""

from __future__ import annotations

import json
from typing import Any

from controlplane.api import errors
from controlplane.api import managedfields as mf
from controlplane.api.registry import Resource
from controlplane.apiserver.httpio import Request

__all__ = ["LAST_APPLIED", "apply", "entries_of", "field_manager", "forbid_force", "record", "require_manager"]

Obj = dict[str, Any]
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def field_manager(req: Request) -> str:
    """The manager of a non-apply write: ``fieldManager``, else the User-Agent's prefix
    (apiserver handlers/rest.go: ``kubectl-edit/v1.33.0 (linux/amd64) …`` → ``kubectl-edit``)."""
    return req.q("fieldManager") or mf.manager_from_user_agent(req.headers.get("user-agent", ""))


def _status_only(res: Resource, subresource: str | None) -> bool | None:
    if subresource == "status":
        return True
    return False if "status" in res.subresources else None


def _without_managed(obj: Obj) -> Obj:
    md = obj.get("metadata")
    if not isinstance(md, dict) or "managedFields" not in md:
        return obj
    return {**obj, "metadata": {k: v for k, v in md.items() if k != "managedFields"}}


def entries_of(obj: Obj) -> list[mf.Entry]:
    """The entries of ``obj``'s ``metadata.managedFields``; 422 naming the bad entry."""
    md = obj.get("metadata") or {}
    try:
        return mf.decode(md.get("managedFields") if isinstance(md, dict) else None)
    except ValueError as e:
        name = str(md.get("name") or "") if isinstance(md, dict) else ""
        raise errors.invalid(
            str(obj.get("kind") or ""), name, [errors.Cause("metadata.managedFields", str(e))]
        ) from None


def _store(obj: Obj, entries: list[mf.Entry]) -> None:
    md = obj["metadata"]
    encoded = mf.encode(entries)
    if encoded:
        md["managedFields"] = encoded
    else:
        md.pop("managedFields", None)


def record(
    res: Resource, old: Obj | None, sent: Obj, obj: Obj, *, manager: str | None, subresource: str | None
) -> None:
    """Set ``obj``'s managedFields after a non-apply write of ``sent`` by ``manager`` over ``old``.

    ``sent`` is what the client wrote (its managedFields, if any, replace the stored ones).
    """
    sent_md = sent.get("metadata") if isinstance(sent.get("metadata"), dict) else {}
    given = sent_md.get("managedFields") if isinstance(sent_md, dict) else None
    if given is not None and subresource != "status":
        entries = entries_of(sent)
    elif old is not None:
        entries = entries_of(old)
    else:
        entries = []
    if manager:
        entries = mf.record_update(
            entries,
            _without_managed(old) if old is not None else None,
            _without_managed(obj),
            manager=manager,
            api_version=res.api_version,
            subresource=subresource or "",
            status_only=_status_only(res, subresource),
        )
    _store(obj, entries)


def forbid_force() -> None:
    """``force`` on a patch that is not an apply (apimachinery validation ValidatePatchOptions)."""
    raise errors.invalid(
        "PatchOptions.meta.k8s.io",
        "",
        [errors.Cause("force", "Forbidden: may not be specified for non-apply patch", "FieldValueForbidden")],
    )


def require_manager(manager: str | None) -> str:
    """Apply needs a fieldManager (apimachinery validation ValidatePatchOptions)."""
    if not manager:
        raise errors.invalid(
            "PatchOptions.meta.k8s.io",
            "",
            [errors.Cause("fieldManager", "Required value: is required for apply patch", "FieldValueRequired")],
        )
    return manager


def apply(res: Resource, live: Obj | None, config: Obj, *, manager: str, force: bool) -> Obj:
    """The object after ``manager`` applies ``config`` over ``live`` (None: a create), managedFields set.

    Raises 409 Conflict with Kubernetes' message and one FieldManagerConflict cause per field.
    """
    entries = entries_of(live) if live is not None else []
    base = _without_managed(live) if live is not None else None
    try:
        merged, entries = mf.apply(
            entries,
            base,
            config,
            manager=manager,
            api_version=res.api_version,
            force=force,
            status_only=_status_only(res, None),
        )
    except mf.ApplyConflict as e:
        causes = [errors.Cause(path, f"conflict with {who}", "FieldManagerConflict") for who, path in e.conflicts]
        raise errors.Conflict(str(e), causes=causes) from None
    md = merged.setdefault("metadata", {})
    annotations = md.get("annotations")
    cfg_annotations = (config.get("metadata") or {}).get("annotations") or {}
    if isinstance(annotations, dict) and LAST_APPLIED in annotations and LAST_APPLIED not in cfg_annotations:
        # lastappliedupdater.go: an object once applied client-side keeps a last-applied
        # configuration that matches what was applied last, so client-side apply still works.
        md["annotations"] = {**annotations, LAST_APPLIED: json.dumps(config, separators=(",", ":")) + "\n"}
    _store(merged, entries)
    return merged
