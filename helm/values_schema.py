"""Generates ``sovereign-hub/values.schema.json``: strict, so a typo fails ``helm install``.

The ``policy`` section is the policy document's own JSON Schema (generated
from the typed model), so Helm refuses a wrong policy before the hub ever
sees it. Run ``python helm/values_schema.py`` after changing values or the
policy model; a test keeps the committed file current.
"""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path
from typing import Any

from sovereign_hub.audit.sinks import SINKS
from sovereign_hub.audit.sinks.options import options_of
from sovereign_hub.policy.schema import generate as policy_json_schema

OUT = Path(__file__).parent / "sovereign-hub" / "values.schema.json"

DIGEST = {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}
# The placeholder an unreleased chart carries: an install with it can only fail at pull time.
UNRELEASED = "sha256:" + "0" * 64


def released_images() -> dict:
    """hub and proxy digests may be the placeholder only if allowUnreleasedImages is true."""
    not_placeholder = {"properties": {"image": {"properties": {"digest": {
        "not": {"const": UNRELEASED},
        "description": "the all-zero placeholder: run `make release`, or set "
                       "allowUnreleasedImages: true to render the chart anyway",
    }}}}}  # fmt: skip
    return {
        "if": {"properties": {"allowUnreleasedImages": {"const": False}}},
        "then": {"properties": {"hub": not_placeholder, "proxy": not_placeholder}},
    }


QUANTITY = {"type": ["string", "number"], "pattern": "^[0-9.]+[a-zA-Z]*$"}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
STRING = {"type": "string"}
STRINGS = {"type": "array", "items": STRING}
DNS_NAME = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
# A key of a Secret's data, as the API server allows it.
SECRET_KEY = {"type": "string", "pattern": "^[-._a-zA-Z0-9]+$", "maxLength": 253}
# One secret value from an existing Secret (empty: the chart's own), and its key there.
SECRET_REF = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"existingSecret": STRING, "key": SECRET_KEY},
}


def obj(properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict:
    schema = {"type": "object", "additionalProperties": False, "properties": properties, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def free_map(values: dict | None = None) -> dict:
    return {"type": "object", "additionalProperties": values or {"type": "string"}}


def image() -> dict:
    return obj(
        {
            # registry/repository only: the digest goes in `digest`, and no tag anywhere.
            "repository": {"type": "string", "pattern": "^[^@:]+(:[0-9]+)?/[^@:]+$"},
            "digest": DIGEST,
            "pullPolicy": {"enum": ["IfNotPresent", "Always", "Never"]},
        },
        ("repository", "digest"),
        description="An image by digest: tags are not accepted.",
    )


RESOURCES = obj(
    {
        "requests": obj({"cpu": QUANTITY, "memory": QUANTITY, "ephemeral-storage": QUANTITY}),
        "limits": obj({"cpu": QUANTITY, "memory": QUANTITY, "ephemeral-storage": QUANTITY}),
    },
    ("requests", "limits"),
)
PDB = obj({"enabled": {"type": "boolean"}, "maxUnavailable": {"type": ["integer", "string"]}})
LIST = {"type": "array"}
CIDR = {
    "type": "string",
    "pattern": r"^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$|^[0-9a-fA-F:]+/[0-9]{1,3}$",
}
CONFIGMAP_KEY = "^[-._a-zA-Z0-9]+$"
ABSOLUTE_PATH = {"type": "string", "pattern": "^/"}
# Volumes and mounts are Kubernetes' own objects: the API server checks them.
VOLUMES = {"type": "array", "items": {"type": "object", "required": ["name"]}}
MOUNTS = {"type": "array", "items": {"type": "object", "required": ["name", "mountPath"]}}
TOLERATIONS = {"type": "array", "items": {"type": "object"}}


PRIORITY = {"type": "integer", "minimum": -2147483648, "maximum": 1000000000}
SCHEDULING = obj(
    {
        "userScheduler": obj(
            {
                "enabled": {
                    "type": "boolean",
                    "description": "Run a kube-scheduler of the release's own, scoring "
                    "MostAllocated, and have user servers and placeholders use it.",
                },
                "replicas": {"type": "integer", "minimum": 1},
                "image": image(),
                "scoringResources": {
                    "type": "array",
                    "minItems": 1,
                    "items": obj(
                        {
                            "name": {"type": "string", "minLength": 1},
                            "weight": {"type": "integer", "minimum": 1, "maximum": 100},
                        },
                        ("name", "weight"),
                    ),
                    "description": "Resources the MostAllocated score weighs, with weights.",
                },
                "resources": RESOURCES,
                "nodeSelector": free_map(),
                "tolerations": TOLERATIONS,
            },
            description="Zero to JupyterHub's user scheduler: packs user servers.",
        ),
        "podPriority": obj(
            {
                "enabled": {"type": "boolean"},
                "globalDefault": {"type": "boolean"},
                "defaultPriority": {
                    **PRIORITY,
                    "description": "The user servers' PriorityClass value.",
                },
                "userPlaceholderPriority": {
                    **PRIORITY,
                    "description": "The placeholders' PriorityClass value (below defaultPriority).",
                },
            },
            description="PriorityClasses for user servers and placeholders.",
        ),
        "userPlaceholder": obj(
            {
                "enabled": {"type": "boolean"},
                "image": image(),
                "pools": {
                    "type": "array",
                    "items": obj(
                        {
                            "region": {
                                **DNS_NAME,
                                "description": "A region of the policy. A region in a "
                                "cluster of its own (`cluster:` in the policy) is not "
                                "rendered into the hub's cluster; NOTES.txt names the pool.",
                            },
                            "profile": {
                                "type": "string",
                                "minLength": 1,
                                "description": "A GPU profile of the policy offered in the "
                                "region: each placeholder asks what one such server is "
                                "guaranteed.",
                            },
                            "replicas": {"type": "integer", "minimum": 0},
                        },
                        ("region", "profile", "replicas"),
                    ),
                },
            },
            description="Low-priority pods holding room for the next users' servers.",
        ),
    },
    description="Placeholders and packing, as Zero to JupyterHub's `scheduling`.",
)


def named_map(pattern: str, values: dict | None = None) -> dict:
    """A map whose keys match ``pattern``: a bad key is refused at the map's own path."""
    return {
        "type": "object",
        "patternProperties": {pattern: values or {"type": "string"}},
        "additionalProperties": False,
    }


ENV = named_map("^[-._a-zA-Z][-._a-zA-Z0-9]*$")
PINNED_IMAGE = {"type": "string", "pattern": "^[^@]+@sha256:[0-9a-f]{64}$"}
PEERS = {
    "type": "array",
    "items": obj(
        {
            "podSelector": {"type": "object"},
            "namespaceSelector": {"type": "object"},
            "ipBlock": obj({"cidr": CIDR, "except": {"type": "array", "items": CIDR}}, ("cidr",)),
        },
        minProperties=1,
    ),
    "description": "NetworkPolicy peers the hub may reach this sink at (in-cluster stores).",
}


def egress_allow_rules(*extra: str) -> dict:
    """Zero to JupyterHub's predefined egress rules, by the same names."""
    names = ("dnsPortsCloudMetadataServer", "dnsPortsKubeSystemNamespace", "dnsPortsPrivateIPs")
    return obj({name: {"type": "boolean"} for name in (*names, *extra)})


# One schema per sink type, from the sink's own typed options (audit/sinks/options.py), so
# the chart accepts exactly what `AuditTrail.sinks` does; the chart adds only the limits
# below, which a JSON schema can say and a Python type cannot.
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}
_HTTP_LIMITS = {
    "url": {"pattern": "^https?://"},
    "timeout": {"exclusiveMinimum": 0},
}
LIMITS: dict[str, dict[str, dict[str, Any]]] = {
    "sqlite": {"path": {"minLength": 1}},
    "postgresql": {
        "dsn": {"pattern": "^(postgres(ql)?://|[a-z]+=)"},
        "connect_timeout": {"minimum": 1},
        "statement_timeout_ms": {"minimum": 1},
    },
    "jsonl": {"path": {"minLength": 1}},
    "syslog": {"host": {"minLength": 1}, "port": {"minimum": 1, "maximum": 65535}},
    "loki": _HTTP_LIMITS,
    "opensearch": {**_HTTP_LIMITS, "index": {"minLength": 1}},
    "webhook": _HTTP_LIMITS,
}


def _option_schema(option: Any) -> dict:
    kinds = [k for k in typing.get_args(option.kind) or (option.kind,) if k is not type(None)]
    if typing.get_origin(kinds[0]) is dict:
        return free_map()
    return {"type": _JSON_TYPES[kinds[0]]}


def sink_options(kind: str) -> tuple[dict[str, dict], list[str]]:
    """The chart's schema for each option of sink ``kind`` (but ``name``, which the chart
    limits to a DNS name), and the required ones."""
    options = [o for o in options_of(SINKS[kind]) if o.name != "name"]
    limits = LIMITS.get(kind, {})
    schemas = {o.name: {**_option_schema(o), **limits.get(o.name, {})} for o in options}
    return schemas, [o.name for o in options if o.required]


def sink() -> dict:
    rules = []
    for kind in SINKS:
        options, required = sink_options(kind)
        then = obj({"type": {"const": kind}, "name": DNS_NAME, "egressTo": PEERS, **options})
        if required:
            then["required"] = required
        rules.append({"if": {"properties": {"type": {"const": kind}}}, "then": then})
    return {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": list(SINKS)}},
        "allOf": rules,
    }


def values_schema() -> dict:
    policy = policy_json_schema()
    defs = policy.pop("$defs")
    policy.pop("$schema", None)
    policy.pop("$id", None)
    schema = obj(
        {
            "nameOverride": {"type": "string", "maxLength": 30},
            "fullnameOverride": {"type": "string", "maxLength": 40},
            "imagePullSecrets": {
                "type": "array",
                "items": obj({"name": {"type": "string", "minLength": 1}}, ("name",)),
            },
            "secrets": obj({"generate": {"type": "boolean"}}),
            "global": {"type": "object"},  # Helm passes it to every chart
            "allowUnreleasedImages": {
                "type": "boolean",
                "description": "Render with the all-zero placeholder digests of an "
                "unreleased chart (development only: such pods cannot pull).",
            },
            "hub": obj(
                {
                    "image": image(),
                    "resources": RESOURCES,
                    "db": obj(
                        {
                            "type": {"enum": ["sqlite-pvc", "postgresql"]},
                            "pvc": obj(
                                {
                                    "storage": QUANTITY,
                                    "storageClassName": {"type": "string"},
                                    "accessModes": {
                                        "type": "array",
                                        "items": {
                                            "enum": [
                                                "ReadWriteOnce",
                                                "ReadWriteOncePod",
                                                "ReadWriteMany",
                                            ]
                                        },
                                    },
                                }
                            ),
                            "sqlite": obj(
                                {
                                    "synchronous": {
                                        "enum": ["full", "normal"],
                                        "description": "The SQLite database runs in WAL "
                                        "mode. full: every commit synced (kept through a "
                                        "power loss); normal: synced at checkpoints (kept "
                                        "through a hub crash, the last ones may be lost "
                                        "with the node's power), faster.",
                                    }
                                }
                            ),
                            "url": {"type": "string"},
                            "passwordSecret": obj({"name": STRING, "key": STRING}),
                            "backup": obj(
                                {
                                    "enabled": {
                                        "type": "boolean",
                                        "description": "A pre-upgrade hook Job copies the "
                                        "SQLite database before the new hub migrates it.",
                                    },
                                    "keep": {"type": "integer", "minimum": 0},
                                }
                            ),
                        },
                        ("type",),
                        **{
                            "if": {"properties": {"type": {"const": "postgresql"}}},
                            "then": {
                                "properties": {"url": {"pattern": "^postgres(ql)?://[^:@/]+@"}}
                            },
                        },
                    ),
                    "existingSecret": {"type": "string"},
                    "cookieSecret": SECRET_REF,
                    "cryptKey": SECRET_REF,
                    "extraEnv": ENV,
                    # Each snippet becomes a ConfigMap key: extra-config.<name>.py.
                    "extraConfig": named_map(CONFIGMAP_KEY),
                    "extraFiles": named_map(
                        CONFIGMAP_KEY,
                        obj(
                            {"mountPath": ABSOLUTE_PATH, "stringData": STRING},
                            ("mountPath", "stringData"),
                        ),
                    ),
                    "extraVolumes": VOLUMES,
                    "extraVolumeMounts": MOUNTS,
                    "templatePaths": {"type": "array", "items": ABSOLUTE_PATH},
                    "templateVars": {"type": "object"},
                    "serviceAccount": obj({"annotations": free_map()}),
                    "nodeSelector": free_map(),
                    "tolerations": LIST,
                    "affinity": {"type": "object"},
                    "service": obj(
                        {
                            "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                            "annotations": free_map(),
                        }
                    ),
                    "pdb": PDB,
                    "networkPolicy": obj(
                        {
                            "enabled": {"type": "boolean"},
                            "egress": {
                                "type": "array",
                                "items": obj(
                                    {
                                        "cidr": CIDR,
                                        "ports": {
                                            "type": "array",
                                            "items": obj(
                                                {
                                                    "port": PORT,
                                                    "protocol": {"enum": ["TCP", "UDP"]},
                                                },
                                                ("port",),
                                            ),
                                        },
                                    }
                                ),
                            },
                            "egressAllowRules": egress_allow_rules("privateIPs", "nonPrivateIPs"),
                        }
                    ),
                    "metrics": obj(
                        {
                            "authenticatePrometheus": {"type": "boolean"},
                            "serviceMonitor": obj(
                                {
                                    "enabled": {"type": "boolean"},
                                    "interval": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                                    "labels": free_map(),
                                }
                            ),
                            "prometheusRule": obj(
                                {
                                    "enabled": {"type": "boolean"},
                                    "labels": free_map(),
                                    "spoolFullRatio": {
                                        "type": "number",
                                        "exclusiveMinimum": 0,
                                        "maximum": 1,
                                    },
                                    "sinkLagSeconds": {"type": "integer", "minimum": 1},
                                    "spawnFailureRatio": {
                                        "type": "number",
                                        "exclusiveMinimum": 0,
                                        "maximum": 1,
                                    },
                                    "gpuQueueWaitSeconds": {"type": "integer", "minimum": 1},
                                    "verifyMaxAgeSeconds": {"type": "integer", "minimum": 1},
                                }
                            ),
                            "grafanaDashboard": obj(
                                {
                                    "enabled": {"type": "boolean"},
                                    "namespace": {"type": "string"},
                                    "labels": free_map(),
                                }
                            ),
                        }
                    ),
                }
            ),
            "proxy": obj(
                {
                    "image": image(),
                    "resources": RESOURCES,
                    "apiConcurrency": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 1000,
                        "description": "Route updates the hub keeps in flight to the "
                        "proxy's API at once (JupyterHub's ConfigurableHTTPProxy.concurrency).",
                    },
                    "service": obj(
                        {
                            "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                            "annotations": free_map(),
                            "loadBalancerSourceRanges": {"type": "array", "items": CIDR},
                        }
                    ),
                    "nodeSelector": free_map(),
                    "tolerations": LIST,
                    "pdb": PDB,
                    "networkPolicy": obj(
                        {"enabled": {"type": "boolean"}, "egressAllowRules": egress_allow_rules()}
                    ),
                    "gatewayClient": obj(
                        {
                            "existingSecret": {"type": "string"},
                            "egressCidrs": {"type": "array", "items": CIDR},
                        }
                    ),
                }
            ),
            "singleuser": obj(
                {
                    "homeMountPath": {"type": "string", "pattern": "^/"},
                    "homeSize": QUANTITY,
                    "startTimeout": {"type": "integer", "minimum": 30},
                    "httpTimeout": {"type": "integer", "minimum": 5},
                    "networkPolicy": obj(
                        {
                            "enabled": {"type": "boolean"},
                            "blockedCidrs": {"type": "array", "items": CIDR},
                            "egressAllowRules": egress_allow_rules(),
                        }
                    ),
                    "extraLabels": free_map(),
                    "extraEnv": ENV,
                    "extraTolerations": TOLERATIONS,
                    "storage": obj(
                        {
                            # z2jh's `static` (one shared claim) is not offered: homes are
                            # per user and region, and a shared volume is an extraVolume.
                            "type": {"enum": ["dynamic", "none"]},
                            "extraVolumes": VOLUMES,
                            "extraVolumeMounts": MOUNTS,
                            "homeAccessModes": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "enum": ["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany"]
                                },
                            },
                        }
                    ),
                }
            ),
            "scheduling": SCHEDULING,
            "prePuller": obj(
                {
                    "enabled": {"type": "boolean"},
                    "pause": image(),
                    "resources": RESOURCES,
                    "extraTolerations": LIST,
                    "channels": {"type": "array", "items": STRING},
                    "extraImages": {"type": "array", "items": PINNED_IMAGE},
                }
            ),
            "cull": obj(
                {
                    "enabled": {"type": "boolean"},
                    "timeout": {"type": "integer", "minimum": 60},
                    "every": {"type": "integer", "minimum": 10},
                    "concurrency": {"type": "integer", "minimum": 1},
                    "maxAge": {"type": "integer", "minimum": 0},
                }
            ),
            "ingress": obj(
                {
                    "enabled": {"type": "boolean"},
                    "className": {"type": "string"},
                    "annotations": free_map(),
                    "hosts": {"type": "array", "items": {"type": "string", "minLength": 1}},
                    "tls": {
                        "type": "array",
                        "items": obj(
                            {
                                "secretName": {"type": "string"},
                                "hosts": {"type": "array", "items": {"type": "string"}},
                            }
                        ),
                    },
                },
                **{
                    "if": {"properties": {"enabled": {"const": True}}},
                    "then": {"properties": {"hosts": {"minItems": 1}}},
                },
            ),
            "httpRoute": obj(
                {
                    "enabled": {"type": "boolean"},
                    "parentRefs": {
                        "type": "array",
                        "items": {"type": "object", "required": ["name"]},
                    },
                    "hostnames": {"type": "array", "items": {"type": "string"}},
                },
                **{
                    "if": {"properties": {"enabled": {"const": True}}},
                    "then": {"properties": {"parentRefs": {"minItems": 1}}},
                },
            ),
            "auth": obj(
                {
                    "issuer": {"type": "string", "pattern": "^https?://"},
                    "clientId": {"type": "string", "minLength": 1},
                    "clientSecret": obj(
                        {
                            "existingSecret": {"type": "string"},
                            "key": {"type": "string"},
                            "value": {"type": "string"},
                        }
                    ),
                    "callbackUrl": {"type": "string", "pattern": "^(https?://.*)?$"},
                    "scopes": {**STRINGS, "contains": {"const": "openid"}},
                    "usernameClaim": {"type": "string", "minLength": 1},
                    "groupsClaim": {"type": "string", "minLength": 1},
                    "attributeClaims": free_map(),
                    "adminGroups": {"type": "array", "items": {"type": "string"}},
                    "auditorGroups": {"type": "array", "items": {"type": "string"}},
                    "stopUnentitledServers": {"type": "boolean"},
                    "supportContact": {
                        "type": "string",
                        "pattern": "^(|https?://.+|mailto:.+|[^@\\s]+@[^@\\s]+)$",
                        "description": "Whom a refused user should ask: a URL or a mail "
                        "address, shown on refusal pages (empty: no contact shown).",
                    },
                },
                ("issuer", "clientId"),
            ),
            "audit": obj(
                {
                    "onSpoolFull": {"enum": ["fail-closed", "fail-open"]},
                    "spoolLimitBytes": {"type": "integer", "minimum": 1048576},
                    "hmacKey": SECRET_REF,
                    "signingKey": obj(
                        {
                            "enabled": {"type": "boolean"},
                            "existingSecret": STRING,
                            "key": {"type": "string", "pattern": CONFIGMAP_KEY},
                            "publicKeys": {
                                "type": "array",
                                "items": {
                                    "type": "string",
                                    "pattern": "^\\s*-----BEGIN PUBLIC KEY-----",
                                    "description": "A PEM public key (`sovhub audit "
                                    "public-key`), never the private key.",
                                },
                            },
                        }
                    ),
                    "checkpoints": obj(
                        {
                            "everyRecords": {"type": "integer", "minimum": 0},
                            "everySeconds": {"type": "number", "minimum": 0},
                        }
                    ),
                    "sinks": {"type": "array", "minItems": 1, "items": sink()},
                    "secrets": {
                        "type": "array",
                        "items": obj(
                            {
                                "name": DNS_NAME,
                                "existingSecret": {"type": "string"},
                                "stringData": free_map(),
                            },
                            ("name",),
                            oneOf=[{"required": ["existingSecret"]}, {"required": ["stringData"]}],
                        ),
                    },
                }
            ),
            # Empty: the example is used. A mapping: the whole document, checked as such.
            # Text: kept verbatim (Helm sorts a mapping's keys, and with them the profiles);
            # the hub's loader checks it, with its line numbers.
            "policy": {
                "type": ["object", "string"],
                "description": "The policy document; empty uses examplePolicy. Either its "
                "YAML text (`--set-file policy=policy.yaml`), which reaches the hub verbatim, "
                "so the spawn form lists profiles in the order written and comments are kept "
                "(checked by the hub and `sovhub policy check`, not here); or a mapping, "
                "checked here against the policy schema, whose keys Helm sorts, so the form "
                "lists profiles alphabetically.",
                "if": {"type": "object", "minProperties": 1},
                "then": policy,
            },
            "examplePolicy": policy,
        },
        ("hub", "proxy", "singleuser", "auth", "audit", "policy", "examplePolicy"),
        title="Sovereign Hub chart values",
        allOf=[
            released_images(),
            # Without generated Secrets (GitOps), the admin's own must be named.
            {
                "if": {
                    "properties": {"secrets": {"properties": {"generate": {"const": False}}}},
                    "required": ["secrets"],
                },
                "then": {
                    "properties": {
                        "hub": {
                            "required": ["existingSecret"],
                            "properties": {"existingSecret": {"minLength": 1}},
                        },
                        "audit": {
                            "properties": {
                                "hmacKey": {
                                    "required": ["existingSecret"],
                                    "properties": {"existingSecret": {"minLength": 1}},
                                },
                                # A signing key the chart may not generate: the admin's, or off.
                                "signingKey": {
                                    "anyOf": [
                                        {"properties": {"enabled": {"const": False}}},
                                        {
                                            "required": ["existingSecret"],
                                            "properties": {"existingSecret": {"minLength": 1}},
                                        },
                                    ]
                                },
                            }
                        },
                    },
                },
            },
        ],
    )
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "$defs": defs}


def render() -> str:
    return json.dumps(values_schema(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUT.write_text(render())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
