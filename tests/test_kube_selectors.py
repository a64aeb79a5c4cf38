import pytest

from sovereign_hub.sandbox.kube.selectors import Selector, SelectorError

POD = {
    "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "jupyterhub", "tier": "user"}},
    "spec": {"nodeName": "n1"},
    "status": {"phase": "Running"},
}


@pytest.mark.parametrize(
    ("labels", "fields", "expected"),
    [
        ("app=jupyterhub", None, True),
        ("app==jupyterhub,tier=user", None, True),
        ("app!=jupyterhub", None, False),
        ("missing!=x", None, True),  # != matches objects without the label
        ("tier in (user, core)", None, True),
        ("tier notin (user)", None, False),
        ("app", None, True),
        ("!app", None, False),
        ("!missing", None, True),
        (None, "metadata.name=p", True),
        (None, "metadata.namespace=other", False),
        (None, "status.phase!=Pending,spec.nodeName=n1", True),
        (None, "spec.nodeName=", False),
        ("app=jupyterhub", "status.phase=Running", True),
    ],
)
def test_selector_matches(labels, fields, expected):
    assert Selector.parse(labels, fields).matches(POD) is expected


@pytest.mark.parametrize(
    ("labels", "fields"), [("a in (x", None), ("=x", None), (None, "metadata.name")]
)
def test_malformed_selectors_are_refused(labels, fields):
    with pytest.raises(SelectorError):
        Selector.parse(labels, fields)
