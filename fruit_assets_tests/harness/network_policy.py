"""Kubernetes NetworkPolicy semantics for one namespace, without a cluster: a connection is allowed
when the source's egress and the destination's ingress both admit it. A pod selected by no policy of
a direction is open in that direction; once selected, only what some rule admits passes. Peers are
pods (by labels) or external addresses (by the literal ipBlock CIDR, placeholders included)."""

from __future__ import annotations

from dataclasses import dataclass, field

NAMESPACE = "dagster"


@dataclass(frozen=True)
class Peer:
    labels: dict = field(default_factory=dict)  # a pod's labels; empty with an address: outside the cluster
    address: str = ""  # an ipBlock CIDR such as VPC_CIDR, or "internet"
    namespace: str = NAMESPACE


def selects(selector: dict | None, labels: dict) -> bool:
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        present, value = expression["key"] in labels, labels.get(expression["key"])
        operator = expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and not present or operator == "DoesNotExist" and present:
            return False
    return True


def _peer_matches(rule_peers: list[dict] | None, peer: Peer) -> bool:
    if not rule_peers:  # no from/to: every peer
        return True
    for entry in rule_peers:
        if "ipBlock" in entry:
            if peer.address and entry["ipBlock"]["cidr"] in (peer.address, "0.0.0.0/0"):
                return True
            continue
        if peer.address:
            continue
        namespace_selector = entry.get("namespaceSelector")
        in_namespace = (selects(namespace_selector, {"kubernetes.io/metadata.name": peer.namespace})
                        if namespace_selector is not None else peer.namespace == NAMESPACE)
        if in_namespace and (entry.get("podSelector") is None or selects(entry["podSelector"], peer.labels)):
            return True
    return False


def _port_matches(rule_ports: list[dict] | None, port: int, protocol: str) -> bool:
    return not rule_ports or any(p.get("port") in (None, port) and p.get("protocol", "TCP") == protocol
                                 for p in rule_ports)


def _admits(policies: list[dict], pod: Peer, other: Peer, port: int, protocol: str, direction: str) -> bool:
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [p for p in policies
                 if direction in p["spec"].get("policyTypes", ["Ingress"]) and selects(p["spec"]["podSelector"], pod.labels)]
    if not selecting:
        return True
    return any(_peer_matches(rule.get(peers_key), other) and _port_matches(rule.get("ports"), port, protocol)
               for policy in selecting for rule in policy["spec"].get(key) or [])


def allowed(policies: list[dict], source: Peer, destination: Peer, port: int, protocol: str = "TCP") -> bool:
    egress = source.address or _admits(policies, source, destination, port, protocol, "Egress")
    ingress = destination.address or destination.namespace != NAMESPACE or _admits(
        policies, destination, source, port, protocol, "Ingress")
    return bool(egress and ingress)
