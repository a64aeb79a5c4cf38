"""Defaults and validation of the workload, budget and RBAC kinds a chart installs.

What kube-apiserver's registry strategies do on create and update for
Deployments, DaemonSets, StatefulSets, ReplicaSets, Jobs, CronJobs,
PodDisruptionBudgets and RBAC roles and bindings: the defaults a client reads
back (replicas, strategies, the pod template's defaults), the checks a chart
meets (a selector that matches the template's labels, a pod template that is a
valid pod spec, the restart policy each kind allows, a budget with one of
``minAvailable``/``maxUnavailable``, rules with verbs, a binding's role), and the
fields that cannot change (a workload's selector, a binding's ``roleRef``, a Job's
template). Messages follow apimachinery's wording.

No controller acts on these objects: a Deployment makes no ReplicaSet and no
pods, a Job never runs, and their status stays as created.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

from .admission import Invalid, check_pod_spec, default_pod_spec
from .store import Obj

Causes = list[tuple[str, str]]
_REPLICATED = ("deployments", "statefulsets", "replicasets")
_TEMPLATED = (*_REPLICATED, "daemonsets", "jobs")
_ROLES = ("roles", "clusterroles")
_BINDINGS = ("rolebindings", "clusterrolebindings")
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"


def _go_map(labels: dict[str, Any]) -> str:
    """A label map as Go prints it in a validation message (``map[a:b c:d]``)."""
    return "map[" + " ".join(f"{k}:{v}" for k, v in sorted(labels.items())) + "]"


def default(resource: str, obj: Obj) -> Obj:
    """``obj`` with the defaults the real server adds on create (a copy)."""
    if resource not in (*_TEMPLATED, "cronjobs", "poddisruptionbudgets"):
        return obj
    obj = copy.deepcopy(obj)
    spec = obj.setdefault("spec", {})
    template = spec.get("jobTemplate", {}).get("spec", {}) if resource == "cronjobs" else spec
    if isinstance(template.get("template", {}).get("spec"), dict):
        default_pod_spec(template["template"]["spec"])
    if resource in _REPLICATED:
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
    if resource == "deployments":
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            strategy.setdefault("type", "RollingUpdate")
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
    elif resource == "daemonsets":
        spec.setdefault("revisionHistoryLimit", 10)
        strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            strategy.setdefault("type", "RollingUpdate")
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", 1)
            rolling.setdefault("maxSurge", 0)
    elif resource == "statefulsets":
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault(
            "updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
        )
    elif resource == "jobs":
        _default_job(obj)
    elif resource == "cronjobs":
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
    obj.setdefault("status", {})
    return obj


def _default_job(obj: Obj) -> None:
    """The Job strategy's defaults, and its generated selector: the Job's own uid, as a
    label on the selector and the template (unless ``manualSelector`` is set)."""
    spec, meta = obj["spec"], obj["metadata"]
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if spec.get("manualSelector"):
        return
    uid = meta.setdefault("uid", str(uuid.uuid4()))
    spec["selector"] = {"matchLabels": {JOB_UID_LABEL: uid}}
    labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
    labels.update({JOB_UID_LABEL: uid, "controller-uid": uid, "batch.kubernetes.io/job-name":
                   meta.get("name", ""), "job-name": meta.get("name", "")})  # fmt: skip


def _selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and present and labels[key] in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


def _check_template(resource: str, spec: dict[str, Any], at: str, causes: Causes) -> None:
    template = spec.get("template")
    if not isinstance(template, dict):
        causes.append((f"{at}.template", "Required value"))
        return
    pod = template.get("spec") or {}
    check_pod_spec(pod, causes, f"{at}.template.spec")
    restart = pod.get("restartPolicy", "Always")
    allowed = ("OnFailure", "Never") if resource in ("jobs", "cronjobs") else ("Always",)
    if restart not in allowed:
        listed = ", ".join(f'"{a}"' for a in allowed)
        causes.append(
            (f"{at}.template.spec.restartPolicy", f'Unsupported value: "{restart}": '
             f"supported values: {listed}")
        )  # fmt: skip
    selector = spec.get("selector")
    if resource in ("jobs", "cronjobs") and not selector:
        return
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not isinstance(selector, dict):
        causes.append((f"{at}.selector", "Required value"))
    elif not (selector.get("matchLabels") or selector.get("matchExpressions")):
        kind = resource.rstrip("s")
        causes.append((f"{at}.selector", f"Invalid value: {json.dumps(selector)}: empty "
                       f"selector is invalid for {kind}"))  # fmt: skip
    elif not _selector_matches(selector, labels):
        causes.append((f"{at}.template.metadata.labels", f"Invalid value: {_go_map(labels)}: "
                       "`selector` does not match template `labels`"))  # fmt: skip


def _check_budget(spec: dict[str, Any], causes: Causes) -> None:
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        causes.append(("spec", "Invalid value: minAvailable and maxUnavailable cannot be both "
                       "set"))  # fmt: skip
    for key in ("minAvailable", "maxUnavailable"):
        value = spec.get(key)
        if isinstance(value, int) and value < 0:
            causes.append(
                (f"spec.{key}", f"Invalid value: {value}: must be greater than or equal to 0")
            )
        elif isinstance(value, str) and not (value.endswith("%") and value[:-1].isdigit()):
            causes.append((f"spec.{key}", f'Invalid value: "{value}": must be an integer or '
                           "percentage (e.g '5%')"))  # fmt: skip


def _check_rules(obj: Obj, causes: Causes) -> None:
    for i, rule in enumerate(obj.get("rules") or []):
        if not rule.get("verbs"):
            causes.append(
                (f"rules[{i}].verbs", "Required value: verbs must contain at least one value")
            )
        if rule.get("nonResourceURLs"):
            if obj.get("kind") == "Role" or "namespace" in obj["metadata"]:
                causes.append((f"rules[{i}].nonResourceURLs", "Invalid value: "
                               f"{rule['nonResourceURLs']}: namespaced rules cannot apply to "
                               "non-resource URLs"))  # fmt: skip
            if rule.get("apiGroups") or rule.get("resources"):
                causes.append((f"rules[{i}].nonResourceURLs", "Invalid value: "
                               f"{rule['nonResourceURLs']}: rules cannot apply to both regular "
                               "resources and non-resource URLs"))  # fmt: skip
        elif not rule.get("apiGroups"):
            causes.append((f"rules[{i}].apiGroups", "Required value: resource rules must "
                           "supply at least one api group"))  # fmt: skip
        elif not rule.get("resources"):
            causes.append((f"rules[{i}].resources", "Required value: resource rules must "
                           "supply at least one resource"))  # fmt: skip


def _check_binding(resource: str, obj: Obj, causes: Causes) -> None:
    ref = obj.get("roleRef") or {}
    kinds = ("Role", "ClusterRole") if resource == "rolebindings" else ("ClusterRole",)
    if ref.get("apiGroup") != "rbac.authorization.k8s.io":
        causes.append(("roleRef.apiGroup", f'Unsupported value: "{ref.get("apiGroup", "")}": '
                       'supported values: "rbac.authorization.k8s.io"'))  # fmt: skip
    if ref.get("kind") not in kinds:
        listed = ", ".join(f'"{k}"' for k in kinds)
        causes.append(("roleRef.kind", f'Unsupported value: "{ref.get("kind", "")}": '
                       f"supported values: {listed}"))  # fmt: skip
    if not ref.get("name"):
        causes.append(("roleRef.name", "Required value"))
    for i, subject in enumerate(obj.get("subjects") or []):
        kind = subject.get("kind")
        if kind not in ("ServiceAccount", "User", "Group"):
            causes.append((f"subjects[{i}].kind", f'Unsupported value: "{kind}": supported '
                           'values: "ServiceAccount", "User", "Group"'))  # fmt: skip
        if not subject.get("name"):
            causes.append((f"subjects[{i}].name", "Required value"))
        if (
            kind == "ServiceAccount"
            and resource == "clusterrolebindings"
            and not subject.get("namespace")
        ):
            causes.append((f"subjects[{i}].namespace", "Required value"))


def causes(resource: str, obj: Obj) -> Causes:
    """What the real server refuses in ``obj`` beyond its metadata."""
    found: Causes = []
    spec = obj.get("spec") or {}
    if resource in _TEMPLATED:
        _check_template(resource, spec, "spec", found)
        if resource in _REPLICATED and (spec.get("replicas") or 0) < 0:
            found.append(("spec.replicas", f"Invalid value: {spec['replicas']}: must be greater "
                          "than or equal to 0"))  # fmt: skip
    elif resource == "cronjobs":
        if not spec.get("schedule"):
            found.append(("spec.schedule", "Required value"))
        job = (spec.get("jobTemplate") or {}).get("spec") or {}
        _check_template("cronjobs", job, "spec.jobTemplate.spec", found)
    elif resource == "poddisruptionbudgets":
        _check_budget(spec, found)
    elif resource in _ROLES:
        _check_rules(obj, found)
    elif resource in _BINDINGS:
        _check_binding(resource, obj, found)
    return found


def check_update(resource: str, old: Obj, new: Obj) -> None:
    """Refuse a change of what cannot change after create."""
    name = old["metadata"]["name"]
    kind = new.get("kind") or resource
    if resource in (*_REPLICATED, "daemonsets", "jobs"):
        before, after = (
            (old.get("spec") or {}).get("selector"),
            (new.get("spec") or {}).get("selector"),
        )
        if before != after:
            raise Invalid(kind, name, [("spec.selector", f"Invalid value: {json.dumps(after)}: "
                                        "field is immutable")])  # fmt: skip
    if resource == "jobs":
        before, after = old["spec"].get("template"), (new.get("spec") or {}).get("template")
        if before != after:
            raise Invalid(kind, name, [("spec.template", "Invalid value: field is immutable")])
    if resource in _BINDINGS and old.get("roleRef") != new.get("roleRef"):
        raise Invalid(kind, name, [("roleRef", f"Invalid value: {json.dumps(new.get('roleRef'))}"
                                    ": cannot change roleRef")])  # fmt: skip
