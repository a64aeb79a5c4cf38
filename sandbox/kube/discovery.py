"""Discovery: what ``/version``, ``/api``, ``/apis`` and each group version list."""

from __future__ import annotations

from aiohttp import web

from .errors import NO_SUCH_RESOURCE, ApiError
from .store import RESOURCES, Obj

VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0+sovereign-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "platform": "linux/amd64",
}
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
# Verbs of subresources that are not the usual get/patch/update of a status.
_SUB_VERBS = {"binding": ["create"], "log": ["get"], "exec": ["create", "get"]}
_SUB_KINDS = {"binding": "Binding", "exec": "PodExecOptions"}
# What `kubectl get all` lists: the resources a real server puts in the "all" category.
_ALL = {"pods", "services", "deployments", "daemonsets", "statefulsets", "replicasets", "jobs",
        "cronjobs"}  # fmt: skip


async def version(request: web.Request) -> web.Response:
    return web.json_response(VERSION)


async def api_versions(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}
            ],
        }
    )


async def groups(request: web.Request) -> web.Response:
    listed = []
    for name in sorted({r.group for r in RESOURCES.values() if r.group}):
        version = {"groupVersion": f"{name}/v1", "version": "v1"}
        listed.append({"name": name, "versions": [version], "preferredVersion": version})
    return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": listed})


def resource_list(group: str) -> Obj:
    """The APIResourceList of ``group`` (empty for the core group)."""
    if not any(r.group == group for r in RESOURCES.values()):
        raise ApiError(404, "NotFound", NO_SUCH_RESOURCE)
    entries: list[Obj] = []
    for r in RESOURCES.values():
        if r.group != group:
            continue
        entries.append(
            {
                "name": r.plural,
                "singularName": r.kind.lower(),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": _VERBS,
                **({"shortNames": [r.short]} if r.short else {}),
                **({"categories": ["all"]} if r.plural in _ALL else {}),
            }
        )
        for sub in sorted(r.subresources):
            entries.append(
                {
                    "name": f"{r.plural}/{sub}",
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": _SUB_KINDS.get(sub, r.kind),
                    "verbs": _SUB_VERBS.get(sub, ["get", "patch", "update"]),
                }
            )
    return {
        "kind": "APIResourceList",
        # As a real server: only a named group's list carries apiVersion.
        **({"apiVersion": "v1"} if group else {}),
        "groupVersion": f"{group}/v1" if group else "v1",
        "resources": entries,
    }


async def group_resources(request: web.Request) -> web.Response:
    return web.json_response(resource_list(request.match_info.get("group", "")))
