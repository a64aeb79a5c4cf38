"""sovereign_hub.sandbox.netpol: NetworkPolicy egress and ingress → allowed sets → nftables rules."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from sovereign_hub.sandbox.netpol import (
    Allow,
    Endpoint,
    Namespace,
    NetpolError,
    PortRange,
    egress_rules,
    ingress_rules,
    matches,
    nft_ruleset,
)
from tests.conftest import missing

HUB = Endpoint("hub", {"app": "sh", "component": "hub"}, "198.18.0.2")
PROXY = Endpoint("hub", {"app": "sh", "component": "proxy"}, "198.18.0.3")
RSYSLOG = Endpoint("logging", {"app": "rsyslog"}, "198.18.0.9")
OTHER = Endpoint("other", {"app": "rsyslog"}, "198.18.0.10")
NAMESPACES = [Namespace("logging", {"team": "sec"}), Namespace("other", {})]
TCP = "TCP"


def policy(egress: list | None, selector: dict | None = None, types=("Egress",), ns="hub") -> dict:
    spec = {"podSelector": selector or {"matchLabels": {"component": "hub"}},
            "policyTypes": list(types)}  # fmt: skip
    if egress is not None:
        spec["egress"] = egress
    return {"metadata": {"name": "p", "namespace": ns}, "spec": spec}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {"a": "1"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
    ],
)  # fmt: skip
def test_label_selectors(selector, labels, expected):
    assert matches(selector, labels, "here") is expected


def test_an_unknown_operator_is_refused_naming_where():
    with pytest.raises(NetpolError, match=r"here: matchExpressions operator 'Near'"):
        matches({"matchExpressions": [{"key": "a", "operator": "Near"}]}, {}, "here")


def test_a_pod_no_egress_policy_selects_is_open():
    ingress_only = policy(None, types=("Ingress",))
    other_pods = policy([], selector={"matchLabels": {"component": "proxy"}})
    elsewhere = policy([], ns="other")
    assert egress_rules([ingress_only, other_pods, elsewhere], HUB) is None
    assert "policy accept;" in nft_ruleset(None)


def test_a_selected_pod_with_no_rules_may_reach_nothing():
    assert egress_rules([policy([])], HUB) == []
    ruleset = nft_ruleset([])
    assert "policy drop;" in ruleset
    assert 'oifname "lo" accept' in ruleset


def test_peers_ports_and_excepts_with_kubernetes_semantics():
    rules = egress_rules(
        [
            policy(
                [
                    {"to": [{"podSelector": {"matchLabels": {"component": "proxy"}}}],
                     "ports": [{"port": 8001}]},
                    {"to": [{"namespaceSelector": {"matchLabels": {"team": "sec"}},
                             "podSelector": {"matchLabels": {"app": "rsyslog"}}}],
                     "ports": [{"port": 6514, "protocol": TCP}]},
                    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}],
                     "ports": [{"port": 53, "protocol": "UDP"}, {"port": 30000, "endPort": 30010}]},
                    {"ports": [{"port": 443}]},
                    {"to": [{"namespaceSelector": {"matchLabels": {"team": "none"}}}]},
                ]
            )
        ],
        HUB,
        [HUB, PROXY, RSYSLOG, OTHER],
        NAMESPACES,
    )  # fmt: skip
    assert [(r.networks, r.excluded, r.ports, r.any_address) for r in rules] == [
        (("198.18.0.3/32",), (), (PortRange("tcp", 8001, 8001),), False),
        (("198.18.0.9/32",), (), (PortRange("tcp", 6514, 6514),), False),  # not 'other'
        (
            ("0.0.0.0/0",),
            ("169.254.169.254/32",),
            (PortRange("udp", 53, 53), PortRange("tcp", 30000, 30010)),
            False,
        ),
        ((), (), (PortRange("tcp", 443, 443),), True),
    ]  # fmt: skip  (the selector matching no namespace allows nothing)


def test_a_namespace_selector_matches_the_automatic_name_label():
    rules = egress_rules(
        [policy([{"to": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "other"}}}]}])],
        HUB, [RSYSLOG, OTHER], NAMESPACES,
    )  # fmt: skip
    assert [r.networks for r in rules] == [("198.18.0.10/32",)]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"ports": [{"port": "http"}]}, r"spec\.egress\[0\]\.ports\[0\]\.port: named port 'http'"),
        (
            {"to": [{"ipBlock": {"cidr": "fd00::/8"}}]},
            r"spec\.egress\[0\]\.to\[0\]\.ipBlock\.cidr: 'fd00::/8' is IPv6",
        ),
        (
            {"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]},
            r"spec\.egress\[0\]\.to\[0\]\.ipBlock\.cidr: '10\.0\.0\.0/33' is not a CIDR",
        ),
    ],
)
def test_what_cannot_be_translated_is_refused_naming_policy_and_field(rule, message):
    with pytest.raises(NetpolError, match=r"NetworkPolicy hub/p: " + message):
        egress_rules([policy([rule])], HUB)


def test_the_ruleset_text():
    allows = [
        Allow(("198.18.0.3/32",), ports=(PortRange("tcp", 8001, 8001),), source="a"),
        Allow(("0.0.0.0/0",), ("169.254.169.254/32",),
              (PortRange("udp", 53, 53), PortRange("tcp", 53, 53)), source="b"),
        Allow((), any_address=True, source="c"),
    ]  # fmt: skip
    assert nft_ruleset(allows, table="t") == (
        "table inet t {\n"
        "  chain output {\n"
        "    type filter hook output priority 0; policy drop;\n"
        '    oifname "lo" accept\n'
        "    ct state established,related accept\n"
        '    ip daddr { 198.18.0.3/32 } tcp dport 8001 accept comment "a"\n'
        '    ip daddr { 0.0.0.0/0 } ip daddr != { 169.254.169.254/32 } udp dport 53 accept comment "b"\n'
        '    ip daddr { 0.0.0.0/0 } ip daddr != { 169.254.169.254/32 } tcp dport 53 accept comment "b"\n'
        '    accept comment "c"\n'
        "  }\n"
        "}\n"
    )


def test_ingress_takes_from_peers_and_the_receivers_ports():
    ingress = {"from": [{"podSelector": {"matchLabels": {"component": "proxy"}}},
                        {"namespaceSelector": {"matchLabels": {"team": "sec"}}}],
               "ports": [{"port": 8081}]}  # fmt: skip
    spec = {"podSelector": {"matchLabels": {"component": "hub"}}, "ingress": [ingress]}
    governing = {"metadata": {"name": "in", "namespace": "hub"}, "spec": spec}
    endpoints = [HUB, PROXY, RSYSLOG, OTHER]
    # No policyTypes and no egress: an Ingress policy only (the API server's default).
    assert egress_rules([governing], HUB, endpoints, NAMESPACES) is None
    allows = ingress_rules([governing], HUB, endpoints, NAMESPACES)
    port = (PortRange("tcp", 8081, 8081),)
    assert allows == [
        Allow(("198.18.0.3/32",), ports=port, source="NetworkPolicy hub/in: spec.ingress[0].from[0]"),
        Allow(("198.18.0.9/32",), ports=port, source="NetworkPolicy hub/in: spec.ingress[0].from[1]"),
    ]  # fmt: skip
    # A pod no Ingress policy selects takes every connection.
    assert ingress_rules([governing], PROXY, endpoints, NAMESPACES) is None
    ruleset = nft_ruleset(None, table="t", ingress=allows[:1], node=("198.18.7.254",))
    assert ruleset == (
        "table inet t {\n"
        "  chain output {\n"
        "    type filter hook output priority 0; policy accept;\n"
        "  }\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy drop;\n"
        '    iifname "lo" accept\n'
        "    ct state established,related accept\n"
        "    ip saddr { 198.18.7.254 } accept\n"
        "    ip saddr { 198.18.0.3/32 } tcp dport 8081 accept comment "
        '"NetworkPolicy hub/in: spec.ingress[0].from[0]"\n'
        "  }\n"
        "}\n"
    )


def test_an_ingress_rules_named_port_is_the_receivers_own():
    spec = {"podSelector": {}, "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": "http"}]}, {"ports": [{"port": "metrics"}]}]}  # fmt: skip
    named = {"metadata": {"name": "in", "namespace": "hub"}, "spec": spec}
    hub = Endpoint("hub", HUB.labels, HUB.ip, (("http", "TCP", 8081), ("dns", "UDP", 53)))
    # "metrics" is no port of the pod: that rule matches nothing (it does not open every port).
    assert ingress_rules([named], hub) == [
        Allow((), ports=(PortRange("tcp", 8081, 8081),), any_address=True,
              source="NetworkPolicy hub/in: spec.ingress[0]"),
    ]  # fmt: skip
    # In an egress rule a name would be each destination's own port: refused.
    egress = policy([{"ports": [{"port": "http"}]}])
    with pytest.raises(NetpolError, match="named port 'http' is not supported"):
        egress_rules([egress], hub)


def test_nft_accepts_the_ruleset_of_the_charts_hub_policy():
    """`nft --check` in a throw-away network namespace, on the chart's rendered hub policy."""
    from tests.test_helm_chart import HERE, by_kind, helm_binary, render

    if shutil.which("nft") is None:
        missing("nft (Debian nftables)", "make system")
    docs = render(helm_binary("4.1"), HERE / "full-values.yaml")
    hub_policy = next(
        d
        for d in by_kind(docs, "NetworkPolicy")
        if d["metadata"]["name"] == "rel-sovereign-hub-hub"
    )
    hub = Endpoint("hub", {"app.kubernetes.io/name": "sovereign-hub",
                           "app.kubernetes.io/instance": "rel",
                           "app.kubernetes.io/component": "hub"}, "198.18.0.2")  # fmt: skip
    rules = egress_rules([hub_policy], hub, [hub], [Namespace("kube-system", {})])
    assert rules  # the hub is governed: default deny plus its rules
    done = subprocess.run(
        ["unshare", "-n", "nft", "--check", "-f", "-"],
        input=nft_ruleset(rules), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
