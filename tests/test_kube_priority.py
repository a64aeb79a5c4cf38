"""PriorityClasses and the Priority admission plugin, in the emulated API server.

Emulated Kubernetes (no real API server runs here): each case is what a real
kube-apiserver answers, with its wording, to the same request.
"""

from __future__ import annotations

import json

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tests.test_kube_apiserver import emulator, pod_body  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("emulator")


def pc(name: str, value: object = 1000, **fields: object) -> dict:
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name},
        **({"value": value} if value is not None else {}),
        **fields,
    }


def scheduling(emu) -> client.SchedulingV1Api:
    return client.SchedulingV1Api(emu.core.api_client)


async def refused(call, *args) -> tuple[int, dict]:
    with pytest.raises(ApiException) as info:
        await call(*args)
    return info.value.status, json.loads(info.value.body)


async def test_system_classes_exist_and_a_new_class_is_defaulted(emulator):  # noqa: F811
    api = scheduling(emulator)
    names = {c.metadata.name for c in (await api.list_priority_class()).items}
    assert {"system-cluster-critical", "system-node-critical"} <= names
    made = await api.create_priority_class(pc("placeholder", -10))
    assert made.value == -10
    assert made.preemption_policy == "PreemptLowerPriority"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            pc("too-high", 1_000_000_001),
            "value",
            "Forbidden: maximum allowed value of a user defined priority is 1000000000",
        ),
        (
            pc("system-mine", 5),
            "metadata.name",
            "Forbidden: priority class names with 'system-' prefix are reserved for system use "
            "only. error: system-mine is not a known system priority class",
        ),
        (
            pc("system-node-critical", 5),
            "metadata.name",
            "error: value of system-node-critical PriorityClass must be 2000001000",
        ),
        (
            pc("odd-policy", 5, preemptionPolicy="Sometimes"),
            "preemptionPolicy",
            'Unsupported value: "Sometimes": supported values: "PreemptLowerPriority", "Never"',
        ),
    ],
)
async def test_invalid_classes_are_refused_naming_the_field(emulator, body, field, message):  # noqa: F811
    status, answer = await refused(scheduling(emulator).create_priority_class, body)
    assert status == 422
    assert answer["reason"] == "Invalid"
    assert f"{field}: " in answer["message"]
    assert message in answer["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            pc("str-value", "high"),
            "json: cannot unmarshal string into Go struct field PriorityClass.value of type int32",
        ),
        (
            pc("str-default", 5, globalDefault="yes"),
            "json: cannot unmarshal string into Go struct field PriorityClass.globalDefault of "
            "type bool",
        ),
    ],
)
async def test_fields_of_the_wrong_type_are_a_bad_request(emulator, body, message):  # noqa: F811
    status, answer = await refused(scheduling(emulator).create_priority_class, body)
    assert status == 400
    assert answer["message"] == (
        'PriorityClass in version "v1" cannot be handled as a PriorityClass: ' + message
    )


async def test_a_class_without_a_value_is_value_zero(emulator):  # noqa: F811
    # `value` is a plain int32 in the typed object: missing decodes as 0, as on a real server.
    made = await raw_create(emulator, pc("zero", None))
    assert (made["value"], made["globalDefault"]) == (0, False)


async def raw_create(emu, body) -> dict:
    response = await scheduling(emu).create_priority_class(body, _preload_content=False)
    return json.loads(await response.read())


async def test_only_one_global_default_and_value_is_immutable(emulator):  # noqa: F811
    api = scheduling(emulator)
    await api.create_priority_class(pc("users", 100, globalDefault=True))
    status, answer = await refused(api.create_priority_class, pc("others", 50, globalDefault=True))
    assert status == 403
    assert answer["message"] == (
        'priorityclasses.scheduling.k8s.io "others" is forbidden: PriorityClass users is '
        "already marked as default. Only one default can exist"
    )
    status, answer = await refused(api.patch_priority_class, "users", {"value": 7})
    assert status == 422
    assert "value: Forbidden: may not be changed in an update." in answer["message"]
    status, answer = await refused(api.patch_priority_class, "users", {"preemptionPolicy": "Never"})
    assert status == 422
    assert 'preemptionPolicy: Invalid value: "Never": field is immutable' in answer["message"]


async def test_a_pod_naming_an_unknown_class_is_forbidden(emulator):  # noqa: F811
    body = pod_body("p")
    body["spec"]["priorityClassName"] = "nope"
    status, answer = await refused(emulator.core.create_namespaced_pod, "default", body)
    assert status == 403
    assert answer["reason"] == "Forbidden"
    assert answer["message"] == 'pods "p" is forbidden: no PriorityClass with name nope was found'


async def test_admission_resolves_the_class_and_the_global_default(emulator):  # noqa: F811
    api = scheduling(emulator)
    await api.create_priority_class(pc("shy", 500, preemptionPolicy="Never"))
    body = pod_body("named")
    body["spec"]["priorityClassName"] = "shy"
    named = await emulator.core.create_namespaced_pod("default", body)
    assert (named.spec.priority, named.spec.preemption_policy) == (500, "Never")
    plain = await emulator.core.create_namespaced_pod("default", pod_body("plain"))
    assert (plain.spec.priority, plain.spec.priority_class_name) == (0, None)
    await api.create_priority_class(pc("everyone", 20, globalDefault=True))
    defaulted = await emulator.core.create_namespaced_pod("default", pod_body("defaulted"))
    assert (defaulted.spec.priority, defaulted.spec.priority_class_name) == (20, "everyone")
    forged = pod_body("forged")
    forged["spec"].update(priorityClassName="shy", priority=900)
    status, answer = await refused(emulator.core.create_namespaced_pod, "default", forged)
    assert status == 403
    assert answer["message"] == (
        'pods "forged" is forbidden: the integer value of priority (900) must not be provided '
        "in pod spec; priority admission controller computed 500 from the given PriorityClass "
        "name"
    )


async def test_an_update_that_leaves_the_priority_out_keeps_it(emulator):  # noqa: F811
    await scheduling(emulator).create_priority_class(pc("kept", 300))
    body = pod_body("keeper")
    body["spec"]["priorityClassName"] = "kept"
    await emulator.core.create_namespaced_pod("default", body)
    response = await emulator.core.read_namespaced_pod("keeper", "default", _preload_content=False)
    stored = json.loads(await response.read())
    del stored["spec"]["priority"], stored["spec"]["preemptionPolicy"]
    stored["metadata"]["labels"] = {"touched": "yes"}
    updated = await emulator.core.replace_namespaced_pod("keeper", "default", stored)
    assert (updated.spec.priority, updated.metadata.labels) == (300, {"touched": "yes"})


async def test_kubectl_get_priorityclass_prints_its_columns(emulator):  # noqa: F811
    headers = {
        "Authorization": "Bearer t0ken",
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io",
    }
    async with aiohttp.ClientSession(headers=headers) as session:
        url = f"{emulator.url}/apis/scheduling.k8s.io/v1/priorityclasses/system-node-critical"
        async with session.get(url) as r:
            table = await r.json()
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Value", "Global-Default", "Age", "PreemptionPolicy"
    ]  # fmt: skip
    name, value, default, _age, policy = table["rows"][0]["cells"]
    assert (name, value, default, policy) == (
        "system-node-critical",
        2000001000,
        False,
        "PreemptLowerPriority",
    )
