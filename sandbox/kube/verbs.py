"""The API verbs on a :class:`.store.Store`, with no HTTP: what a request does to the state.

Each function is synchronous, so on the API server's event loop a verb is
atomic, as a real server's single etcd transaction is. The HTTP layer
(:mod:`.apiserver`) reads the request, calls one of these and writes the
answer; tests can call them directly.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import string
from datetime import UTC, datetime, timedelta
from typing import Any

from . import admission, apply, priority, workloads
from .decoding import check_fields, schema_of
from .errors import ApiError, bad_request, conflict, not_found
from .patch import PatchError, apply_patch
from .selectors import Selector
from .store import RESOURCES, Obj, Resource, Store, now_iso

# The group-qualified kind the real server names in a PatchOptions error.
PATCH_OPTIONS = "PatchOptions.meta.k8s.io"
_NAME_CHARS = string.ascii_lowercase + string.digits
# Set by the server alone: whatever a client sends for them on create is dropped.
_SERVER_SET = ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation")
# Kept from the stored object on every update, whatever the client sends.
_KEPT_ON_UPDATE = (
    "uid",
    "creationTimestamp",
    "namespace",
    "name",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
)


def out(resource: Resource, obj: Obj) -> Obj:
    """An object as clients receive it: with its kind and apiVersion."""
    return {"kind": resource.kind, "apiVersion": resource.api_version, **obj}


def get(store: Store, resource: Resource, namespace: str, name: str) -> Obj:
    obj = store.get(resource.plural, namespace, name)
    if obj is None:
        raise not_found(resource, name)
    return obj


def list_page(
    store: Store,
    resource: Resource,
    namespace: str | None,
    selector: Selector,
    *,
    limit: int = 0,
    continue_token: str = "",
) -> Obj:
    """A list, optionally one page of it (``limit``/``continue``)."""
    items = [o for o in store.list(resource.plural, namespace) if selector.matches(o)]
    meta: Obj = {"resourceVersion": str(store.rv)}
    start = 0
    if continue_token:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(continue_token))["start"])
        except (ValueError, KeyError, TypeError):
            raise bad_request("invalid continue token") from None
    page = items[start : start + limit] if limit else items[start:]
    if limit and start + limit < len(items):
        meta["continue"] = base64.urlsafe_b64encode(
            json.dumps({"start": start + limit}).encode()
        ).decode()
        meta["remainingItemCount"] = len(items) - start - limit
    return {
        "kind": resource.list_kind,
        "apiVersion": resource.api_version,
        "metadata": meta,
        "items": copy.deepcopy(page),
    }


def _require_namespace(store: Store, namespace: str) -> Obj:
    nsobj = store.get("namespaces", "", namespace)
    if nsobj is None:
        raise ApiError(
            404,
            "NotFound",
            f'namespaces "{namespace}" not found',
            {"name": namespace, "kind": "namespaces"},
        )
    return nsobj


def dry_run(values: list[str]) -> bool:
    """Whether a write's ``dryRun`` asks for nothing to be stored (only "All" exists)."""
    bad = [v for v in values if v != "All"]
    if bad:
        raise admission.Invalid(
            "CreateOptions",
            "",
            [("dryRun", f'Unsupported value: "{bad[0]}": supported values: "All"')],
        )
    return bool(values)


def create(
    store: Store,
    resource: Resource,
    namespace: str | None,
    body: Any,
    *,
    dry: bool = False,
    validation: str = "Warn",
    warnings: list[str] | None = None,
    manager: str = "",
) -> Obj:
    if not isinstance(body, dict):
        raise bad_request("the request body must be an object")
    check_fields(resource, body, validation, warnings)
    meta = body.setdefault("metadata", {})
    if resource.namespaced:
        ns = namespace or meta.get("namespace") or "default"
        if meta.get("namespace") not in (None, ns):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        nsobj = _require_namespace(store, ns)
        meta["namespace"] = ns
        if nsobj["status"].get("phase") == "Terminating":
            raise ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {ns} because it is being terminated",
            )
    else:
        meta.pop("namespace", None)
    for key in _SERVER_SET:
        meta.pop(key, None)
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = meta["generateName"] + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))
    obj = workloads.default(resource.plural, admission.default(resource.plural, body))
    # The Priority admission plugin: it mutates a pod before validation, and validates
    # a class's globalDefault after, as the real server orders its admission phases.
    if resource.plural == "pods":
        obj = priority.admit_pod(store, obj)
    admission.validate(resource.plural, resource.kind, obj, workloads.causes(resource.plural, obj))
    if resource.plural == "priorityclasses":
        priority.check_single_default(store, obj)
    if store.get(resource.plural, meta.get("namespace", ""), meta["name"]) is not None:
        raise ApiError(
            409,
            "AlreadyExists",
            f'{resource.plural} "{meta["name"]}" already exists',
            {"name": meta["name"], "kind": resource.plural},
        )
    if manager:
        apply.record_update(
            None, obj, schema_of(resource), manager=manager, api_version=resource.api_version
        )
    if dry:
        obj["metadata"].setdefault("creationTimestamp", now_iso())
        return obj
    return store.create(resource.plural, obj)


def _merged(store: Store, resource: Resource, old: Obj, new: Obj, sub: str | None) -> Obj:
    """The stored object after an update of the main resource or its status."""
    new = copy.deepcopy(new)
    new_meta = new.setdefault("metadata", {})
    for key in _KEPT_ON_UPDATE:
        if key in old["metadata"]:
            new_meta[key] = old["metadata"][key]
        else:
            new_meta.pop(key, None)
    # An update that leaves managedFields out keeps them (an empty list clears them).
    if "managedFields" not in new_meta and "managedFields" in old["metadata"]:
        new_meta["managedFields"] = old["metadata"]["managedFields"]
    if sub == "status":
        result = copy.deepcopy(old)
        result["status"] = new.get("status", {})
        return result
    if "status" in old and "status" in resource.subresources:
        new["status"] = copy.deepcopy(old["status"])
    if resource.plural == "pods":
        priority.keep_on_update(old, new)
        admission.check_pod_update(old, new)
    elif resource.plural == "persistentvolumeclaims":
        admission.check_claim_update(old, new)
    elif resource.plural == "priorityclasses":
        priority.default_class(new)
        causes = priority.check_class_update(old, new)
        if causes:
            raise admission.Invalid(resource.kind, old["metadata"]["name"], causes)
        priority.check_single_default(store, new)
    # Defaults apply to every write, as the server decodes each request with them.
    new = workloads.default(resource.plural, new)
    workloads.check_update(resource.plural, old, new)
    admission.validate(resource.plural, resource.kind, new, workloads.causes(resource.plural, new))
    return new


def store_update(store: Store, resource: Resource, old: Obj, new: Obj, *, dry: bool = False) -> Obj:
    """Store ``new`` over ``old``; an update that removes the last finalizer of an object being
    deleted completes the deletion (a pod's only once its grace period is zero)."""
    if dry:
        return new
    meta = new["metadata"]
    # An update that removes the last finalizer of an object being deleted
    # completes the deletion (a pod only once its grace period is zero).
    released = meta.get("deletionTimestamp") and not meta.get("finalizers")
    if released and (resource.plural != "pods" or meta.get("deletionGracePeriodSeconds") == 0):
        return store.delete(resource.plural, new)
    return store.update(resource.plural, new, old)


def replace(
    store: Store,
    resource: Resource,
    ns: str,
    name: str,
    body: Any,
    sub: str | None,
    *,
    dry: bool = False,
    validation: str = "Warn",
    warnings: list[str] | None = None,
    manager: str = "",
) -> Obj:
    if not isinstance(body, dict):
        raise bad_request("the request body must be an object")
    check_fields(resource, body, validation, warnings)
    old = get(store, resource, ns, name)
    if (given := body.get("metadata", {}).get("name")) not in (None, name):
        raise bad_request(
            f"the name of the object ({given}) does not match the name on the URL ({name})"
        )
    wanted = body.get("metadata", {}).get("resourceVersion")
    if wanted and wanted != old["metadata"]["resourceVersion"]:
        raise conflict(resource, name)
    new = _merged(store, resource, old, body, sub)
    _record(resource, old, new, manager)
    return store_update(store, resource, old, new, dry=dry)


def patch(
    store: Store,
    resource: Resource,
    ns: str,
    name: str,
    content_type: str,
    body: Any,
    sub: str | None,
    *,
    dry: bool = False,
    validation: str = "Warn",
    warnings: list[str] | None = None,
    manager: str = "",
) -> Obj:
    old = get(store, resource, ns, name)
    try:
        patched = apply_patch(content_type, copy.deepcopy(old), body, schema_of(resource))
    except PatchError as exc:
        reason = {415: "UnsupportedMediaType", 400: "BadRequest"}.get(exc.code, "Invalid")
        raise ApiError(exc.code, reason, str(exc)) from None
    if not isinstance(patched, dict):
        # A JSON patch may replace the whole document; the real server's decoder then fails.
        raise admission.Invalid(
            "", "", [("patch", f"Invalid value: {json.dumps(patched)}: is not a JSON object")]
        )
    check_fields(resource, patched, validation, warnings)
    wanted = (patched.get("metadata") or {}).get("resourceVersion")
    if wanted and wanted != old["metadata"]["resourceVersion"]:
        raise conflict(resource, name)
    new = _merged(store, resource, old, patched, sub)
    _record(resource, old, new, manager)
    return store_update(store, resource, old, new, dry=dry)


def _record(resource: Resource, old: Obj, new: Obj, manager: str) -> None:
    if manager:
        schema = schema_of(resource)
        apply.record_update(old, new, schema, manager=manager, api_version=resource.api_version)


def server_side_apply(
    store: Store,
    resource: Resource,
    ns: str,
    name: str,
    body: Any,
    *,
    manager: str,
    force: bool,
    dry: bool = False,
    validation: str = "Warn",
    warnings: list[str] | None = None,
) -> tuple[Obj, bool]:
    """An apply patch (:mod:`.apply`): the object, and whether the apply created it."""
    if not manager:
        raise admission.Invalid(
            PATCH_OPTIONS, "", [("fieldManager", "Required value: is required for apply patch")]
        )
    if not isinstance(body, dict):
        raise bad_request("an apply patch is a YAML or JSON object")
    # The field manager's version check: an apply names its type exactly, unlike a
    # create or an update, whose decoder takes the type from the URL.
    if (body.get("apiVersion"), body.get("kind")) != (resource.api_version, resource.kind):
        raise bad_request(f"invalid object type: {_gvk(body)}")
    check_fields(resource, body, validation, warnings)
    if (given := (body.get("metadata") or {}).get("name")) not in (None, name):
        raise bad_request(
            f"the name of the object ({given}) does not match the name on the URL ({name})"
        )
    old = store.get(resource.plural, ns if resource.namespaced else "", name)
    try:
        applied = apply.apply(
            old,
            body,
            schema_of(resource),
            manager=manager,
            api_version=resource.api_version,
            force=force,
        )
    except apply.Conflicts as exc:
        causes = [
            {"reason": "FieldManagerConflict", "message": f'conflict with "{m}"', "field": f}
            for m, f in exc.conflicts
        ]
        raise ApiError(409, "Conflict", str(exc), {"causes": causes}) from None
    if old is None:
        applied["metadata"]["name"] = name
        created = create(store, resource, ns or None, applied, dry=dry, validation="Ignore")
        return created, True
    wanted = body.get("metadata", {}).get("resourceVersion")
    if wanted and wanted != old["metadata"]["resourceVersion"]:
        raise conflict(resource, name)
    merged = _merged(store, resource, old, applied, None)
    return store_update(store, resource, old, merged, dry=dry), False


def _gvk(body: Obj) -> str:
    """A body's group, version and kind as Go prints a GroupVersionKind."""
    api_version, kind = str(body.get("apiVersion") or ""), str(body.get("kind") or "")
    group_version = api_version if "/" in api_version else f"/{api_version}"
    return f"{group_version}, Kind={kind}"


def bind(store: Store, ns: str, name: str, body: Any) -> None:
    """``pods/binding``: assign a pending pod to a node, once."""
    target = (body.get("target") or {}) if isinstance(body, dict) else {}
    node = target.get("name")
    if target.get("kind", "Node") != "Node" or not node:
        raise bad_request("a binding's target must name a Node")
    old = get(store, RESOURCES["pods"], ns, name)
    if old["metadata"].get("deletionTimestamp"):
        raise ApiError(
            409, "Conflict", f"pod {name} is being deleted, cannot be assigned to a host"
        )
    if old["spec"].get("nodeName"):
        raise ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is '
            f'already assigned to node "{old["spec"]["nodeName"]}"',
        )
    new = copy.deepcopy(old)
    new["spec"]["nodeName"] = node
    conditions = [c for c in new["status"].get("conditions", []) if c.get("type") != "PodScheduled"]
    conditions.append(
        {
            "type": "PodScheduled",
            "status": "True",
            "lastProbeTime": None,
            "lastTransitionTime": now_iso(),
        }
    )
    new["status"]["conditions"] = conditions
    store.update("pods", new, old)


PROPAGATION = ("Foreground", "Background", "Orphan")
ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"


def delete_options(query: Any, body: bytes) -> Obj:
    """The DeleteOptions of a ``DELETE``, as kube-apiserver decodes them.

    A request with a body takes every option from the body and ignores the query
    string; one without takes them from the query (``preconditions`` cannot be
    given there). Values are checked as ``ValidateDeleteOptions`` checks them.
    """
    if body.strip():
        try:
            options = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise bad_request("the request body is not valid JSON") from None
        if not isinstance(options, dict):
            raise bad_request("the request body must be a DeleteOptions object")
        if options.get("kind", "DeleteOptions") != "DeleteOptions":
            raise bad_request(
                f"the body of a DELETE must be a DeleteOptions, not a {options.get('kind')}"
            )
    else:
        options = {k: query[k] for k in ("gracePeriodSeconds", "propagationPolicy") if k in query}
        if "orphanDependents" in query:
            options["orphanDependents"] = query["orphanDependents"] in ("true", "1")
        if "dryRun" in query:
            options["dryRun"] = query.getall("dryRun") if hasattr(query, "getall") else []
    grace = options.get("gracePeriodSeconds")
    if grace is not None:
        try:
            options["gracePeriodSeconds"] = int(grace)
        except (TypeError, ValueError):
            raise bad_request(f"gracePeriodSeconds must be an integer, not {grace!r}") from None
    causes = []
    policy = options.get("propagationPolicy")
    if policy is not None and policy not in PROPAGATION:
        supported = ", ".join(f'"{p}"' for p in PROPAGATION)
        causes.append(
            (
                "propagationPolicy",
                f'Unsupported value: "{policy}": supported values: {supported}, "nil"',
            )
        )
    if policy is not None and options.get("orphanDependents") is not None:
        causes.append(
            (
                "propagationPolicy",
                f'Invalid value: "{policy}": orphanDependents and deletionPropagation cannot be '
                "both set",
            )
        )
    for value in options.get("dryRun") or []:
        if value != "All":
            causes.append(("dryRun", f'Unsupported value: "{value}": supported values: "All"'))
    if causes:
        raise admission.Invalid("DeleteOptions", "", causes)
    return options


def _check_preconditions(resource: Resource, old: Obj, options: Obj) -> None:
    wanted = options.get("preconditions") or {}
    meta = old["metadata"]
    if (uid := wanted.get("uid")) and uid != meta["uid"]:
        raise ApiError(
            409,
            "Conflict",
            f"Precondition failed: UID in precondition: {uid}, UID in object meta: {meta['uid']}",
        )
    rv = wanted.get("resourceVersion")
    if rv and rv != meta["resourceVersion"]:
        raise ApiError(
            409,
            "Conflict",
            f"Precondition failed: ResourceVersion in precondition: {rv}, "
            f"ResourceVersion in object meta: {meta['resourceVersion']}",
        )


def _propagation_finalizer(options: Obj) -> str | None:
    """The garbage collector's finalizer a deletion asks for (none for Background)."""
    policy = options.get("propagationPolicy")
    if policy == "Foreground":
        return FOREGROUND_FINALIZER
    if policy == "Orphan" or options.get("orphanDependents") is True:
        return ORPHAN_FINALIZER
    return None


def delete(store: Store, resource: Resource, ns: str, name: str, options: Obj) -> Obj:
    """Delete one object under ``options`` (decoded by :func:`delete_options`)."""
    old = get(store, resource, ns, name)
    _check_preconditions(resource, old, options)
    if options.get("dryRun"):
        return old
    if resource.plural == "namespaces":
        return terminate_namespace(store, old)
    finalizer = _propagation_finalizer(options)
    if finalizer and finalizer not in (old["metadata"].get("finalizers") or []):
        # The garbage collector removes this finalizer once dependents are handled.
        new = copy.deepcopy(old)
        new["metadata"]["finalizers"] = [*(old["metadata"].get("finalizers") or []), finalizer]
        old = store.update(resource.plural, new, old)
    if resource.plural == "pods":
        return delete_pod(store, old, options.get("gracePeriodSeconds"))
    if old["metadata"].get("finalizers"):
        if old["metadata"].get("deletionTimestamp"):
            return old
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = now_iso()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        return store.update(resource.plural, new, old)
    return store.delete(resource.plural, old)


def delete_pod(store: Store, old: Obj, grace_param: int | None) -> Obj:
    """A pod's graceful deletion, as the pod strategy's ``CheckGracefulDelete`` decides it."""
    spec, meta = old["spec"], old["metadata"]
    grace = (
        int(grace_param)
        if grace_param is not None
        else int(spec.get("terminationGracePeriodSeconds", 30))
    )
    terminal = old.get("status", {}).get("phase") in ("Succeeded", "Failed")
    # A pod no kubelet runs (unbound or finished) goes at once.
    if not spec.get("nodeName") or terminal:
        grace = 0
    elif grace < 0:
        grace = 1
    if grace == 0 and not meta.get("finalizers"):
        return store.delete("pods", old)
    current = meta.get("deletionGracePeriodSeconds")
    if current is not None and grace >= current:
        return old
    new = copy.deepcopy(old)
    new["metadata"]["deletionTimestamp"] = (datetime.now(UTC) + timedelta(seconds=grace)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    new["metadata"]["deletionGracePeriodSeconds"] = grace
    return store.update("pods", new, old)


def terminate_namespace(store: Store, old: Obj) -> Obj:
    """Mark a namespace Terminating; the namespace controller empties and removes it."""
    if old["status"].get("phase") == "Terminating":
        return old
    new = copy.deepcopy(old)
    new["metadata"]["deletionTimestamp"] = now_iso()
    new["status"]["phase"] = "Terminating"
    return store.update("namespaces", new, old)


def delete_collection(
    store: Store, resource: Resource, namespace: str | None, selector: Selector, options: Obj
) -> None:
    for obj in [o for o in store.list(resource.plural, namespace) if selector.matches(o)]:
        meta = obj["metadata"]
        delete(store, resource, meta.get("namespace", ""), meta["name"], options)
