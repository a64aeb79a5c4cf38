"""NetworkPolicy egress as nftables rules: a pure translation, no I/O.

Given the NetworkPolicies of a namespace, the pod they may select and the
endpoints of the (emulated or harnessed) cluster, :func:`egress_rules`
computes what the pod may reach, with Kubernetes' semantics:

- a pod selected by no policy with ``Egress`` in its ``policyTypes`` may
  reach anything; once one selects it, only the union of their rules;
- a rule with no ``to`` allows every destination, one with no ``ports``
  every port; a peer is an ``ipBlock`` (``cidr`` less ``except``), a
  ``podSelector`` (pods of the policy's namespace), a ``namespaceSelector``
  (every pod of the matching namespaces) or both (matching pods of matching
  namespaces);
- selectors take ``matchLabels`` and ``matchExpressions`` (``In``,
  ``NotIn``, ``Exists``, ``DoesNotExist``); ports take ``port``, ``endPort``
  and ``protocol`` (TCP by default).

:func:`nft_ruleset` renders them as an ``inet`` table whose output chain
drops everything else (loopback and replies to allowed connections pass).

Refused, with a :class:`NetpolError` naming the policy and the field:
named ports in egress rules (they would need each destination's container
ports; in ingress rules they are the receiving pod's own, given in its
:class:`Endpoint`), IPv6 blocks, and unknown selector operators.
:func:`ingress_rules` does the same for who may connect to a pod (``from``
peers, the pod's own ports), rendered as an input chain by
:func:`nft_ruleset`: a connection passes when the sender's egress and the
receiver's ingress both allow it, as in Kubernetes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TABLE = "sovhub_netpol"


class NetpolError(ValueError):
    """A policy this translator cannot express; the message names policy and field."""


@dataclass(frozen=True)
class Endpoint:
    """A pod of the cluster: its namespace, labels and address, and its containers' named
    ports as (name, protocol, number), which an ingress rule may name."""

    namespace: str
    labels: Mapping[str, str]
    ip: str
    named_ports: tuple[tuple[str, str, int], ...] = ()


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class PortRange:
    protocol: str  # "tcp" | "udp" | "sctp"
    first: int
    last: int


@dataclass(frozen=True)
class Allow:
    """One allowed destination set: addresses (less ``excluded``) on ``ports``.

    ``networks`` empty with ``any_address`` true means every address;
    ``ports`` empty means every port.
    """

    networks: tuple[str, ...]
    excluded: tuple[str, ...] = ()
    ports: tuple[PortRange, ...] = ()
    any_address: bool = False
    source: str = ""


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str], where: str) -> bool:
    """Whether ``labels`` satisfy a LabelSelector (an empty selector matches everything)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            raise NetpolError(
                f"{where}: matchExpressions operator {op!r} is not one of "
                "In, NotIn, Exists, DoesNotExist"
            )
        if not ok:
            return False
    return True


def _name(policy: Mapping[str, Any]) -> str:
    meta = policy.get("metadata", {})
    return f"NetworkPolicy {meta.get('namespace', '?')}/{meta.get('name', '?')}"


def _ports(
    ports: Sequence[Mapping[str, Any]] | None, where: str, receiver: Endpoint | None = None
) -> tuple[PortRange, ...]:
    """The port ranges of a rule; ``receiver`` (ingress) resolves named ports to its own."""
    out = []
    for i, port in enumerate(ports or []):
        protocol = str(port.get("protocol", "TCP")).lower()
        number = port.get("port")
        if number is None:  # every port of the protocol
            out.append(PortRange(protocol, 1, 65535))
            continue
        if isinstance(number, str) and receiver is not None:
            # A name the pod's containers do not declare (for this protocol) matches nothing.
            out += [
                PortRange(protocol, n, n)
                for name, proto, n in receiver.named_ports
                if name == number and proto.lower() == protocol
            ]
            continue
        if not isinstance(number, int):
            raise NetpolError(
                f"{where}.ports[{i}].port: named port {number!r} is not supported "
                "(the harness knows no container ports); use the number"
            )
        out.append(PortRange(protocol, number, int(port.get("endPort", number))))
    return tuple(out)


def _ipv4(cidr: str, where: str) -> str:
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError as e:
        raise NetpolError(f"{where}: {cidr!r} is not a CIDR ({e})") from e
    if network.version != 4:
        raise NetpolError(f"{where}: {cidr!r} is IPv6; only IPv4 blocks are translated")
    return str(network)


def _peer_addresses(
    peer: Mapping[str, Any],
    namespace: str,
    endpoints: Iterable[Endpoint],
    namespaces: Mapping[str, Namespace],
    where: str,
) -> list[str]:
    pod_selector = peer.get("podSelector")
    ns_selector = peer.get("namespaceSelector")
    found = []
    for endpoint in endpoints:
        if ns_selector is None:
            if endpoint.namespace != namespace:
                continue
        else:
            ns = namespaces.get(endpoint.namespace, Namespace(endpoint.namespace, {}))
            labels = {"kubernetes.io/metadata.name": ns.name, **ns.labels}
            if not matches(ns_selector, labels, f"{where}.namespaceSelector"):
                continue
        if matches(pod_selector, endpoint.labels, f"{where}.podSelector"):
            found.append(f"{endpoint.ip}/32")
    return sorted(set(found), key=lambda c: ipaddress.ip_network(c))


def selects(policy: Mapping[str, Any], pod: Endpoint, direction: str = "Egress") -> bool:
    """Whether ``policy`` governs ``pod``'s ``direction`` (``Egress`` or ``Ingress``)."""
    spec = policy.get("spec", {})
    if policy.get("metadata", {}).get("namespace", pod.namespace) != pod.namespace:
        return False
    types = spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"])
    if direction not in types:
        return False
    return matches(spec.get("podSelector"), pod.labels, f"{_name(policy)}: spec.podSelector")


def egress_rules(
    policies: Iterable[Mapping[str, Any]],
    pod: Endpoint,
    endpoints: Iterable[Endpoint] = (),
    namespaces: Iterable[Namespace] = (),
) -> list[Allow] | None:
    """What ``pod`` may reach: ``None`` when no policy governs its egress (all open)."""
    return _rules(policies, pod, endpoints, namespaces, "Egress")


def ingress_rules(
    policies: Iterable[Mapping[str, Any]],
    pod: Endpoint,
    endpoints: Iterable[Endpoint] = (),
    namespaces: Iterable[Namespace] = (),
) -> list[Allow] | None:
    """Who may connect to ``pod`` (sources, and the pod's ports): ``None`` when no policy
    governs its ingress (all open)."""
    return _rules(policies, pod, endpoints, namespaces, "Ingress")


def _rules(
    policies: Iterable[Mapping[str, Any]],
    pod: Endpoint,
    endpoints: Iterable[Endpoint],
    namespaces: Iterable[Namespace],
    direction: str,
) -> list[Allow] | None:
    endpoints = list(endpoints)
    by_name = {ns.name: ns for ns in namespaces}
    governing = [p for p in policies if selects(p, pod, direction)]
    if not governing:
        return None
    field, peer_field = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    allows: list[Allow] = []
    for policy in governing:
        name = _name(policy)
        for r, rule in enumerate(policy["spec"].get(field) or []):
            where = f"{name}: spec.{field}[{r}]"
            ports = _ports(rule.get("ports"), where, pod if direction == "Ingress" else None)
            if rule.get("ports") and not ports:
                continue  # only named ports the pod does not have: the rule matches nothing
            peers = rule.get(peer_field)
            if not peers:
                allows.append(Allow((), ports=ports, any_address=True, source=where))
                continue
            for p, peer in enumerate(peers):
                at = f"{where}.{peer_field}[{p}]"
                if "ipBlock" in peer:
                    block = peer["ipBlock"]
                    allows.append(
                        Allow(
                            (_ipv4(block["cidr"], f"{at}.ipBlock.cidr"),),
                            tuple(
                                _ipv4(e, f"{at}.ipBlock.except") for e in block.get("except", [])
                            ),
                            ports,
                            source=at,
                        )
                    )
                    continue
                addresses = _peer_addresses(peer, pod.namespace, endpoints, by_name, at)
                if addresses:  # a selector matching no pod allows nothing
                    allows.append(Allow(tuple(addresses), ports=ports, source=at))
    return allows


def _port_match(port: PortRange) -> str:
    ports = str(port.first) if port.first == port.last else f"{port.first}-{port.last}"
    return f"{port.protocol} dport {ports}"


def _chain(hook: str, allows: list[Allow] | None, node: Sequence[str]) -> list[str]:
    """One base chain: ``output`` matches destinations, ``input`` sources."""
    link, address = ("oifname", "daddr") if hook == "output" else ("iifname", "saddr")
    lines = [
        f"  chain {hook} {{",
        f"    type filter hook {hook} priority 0; policy "
        + ("accept;" if allows is None else "drop;"),
    ]
    if allows is not None:
        lines += [f'    {link} "lo" accept', "    ct state established,related accept"]
        if node:
            lines.append(f"    ip {address} {{ {', '.join(node)} }} accept")
        for allow in allows:
            match = []
            if not allow.any_address:
                match.append(f"ip {address} {{ {', '.join(allow.networks)} }}")
            if allow.excluded:
                match.append(f"ip {address} != {{ {', '.join(allow.excluded)} }}")
            comment = [f'comment "{allow.source[:120]}"'] if allow.source else []
            for port in allow.ports or (None,):
                ports = [_port_match(port)] if port else []
                lines.append("    " + " ".join([*match, *ports, "accept", *comment]))
    return [*lines, "  }"]


def nft_ruleset(
    allows: list[Allow] | None,
    table: str = TABLE,
    *,
    ingress: list[Allow] | None = None,
    node: Sequence[str] = (),
) -> str:
    """An nftables script (for ``nft -f -``) enforcing ``allows`` on the output hook and
    ``ingress`` (when a policy governs it) on the input hook. Traffic to and from ``node``
    addresses always passes: Kubernetes always allows it between a pod and its own node
    (the kubelet's probes, say)."""
    lines = [f"table inet {table} {{", *_chain("output", allows, node)]
    if ingress is not None:
        lines += _chain("input", ingress, node)
    return "\n".join([*lines, "}"]) + "\n"
