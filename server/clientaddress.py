"""The client's address: the call's peer, or what a trusted proxy says the client was.

A gateway in front of the server (Envoy, gateway/) is the peer of every call it forwards;
it appends the address it saw to `x-forwarded-for`. The server believes that last entry
only from a peer in STRIDE_TRUSTED_PROXIES: anyone else could write any address there.
Only the last entry is read, the one the trusted proxy itself added: earlier entries came
with the request and are whatever the caller chose.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Network = IPv4Network | IPv6Network


def peer_ip(peer: str) -> str:
    """`ipv4:1.2.3.4:5678` -> `1.2.3.4`; `ipv6:[::1]:5678` -> `::1`; anything else as is."""
    kind, _, address = peer.partition(":")
    if kind == "ipv6":
        return address.rpartition("]")[0].lstrip("[")
    if kind == "ipv4":
        return address.rpartition(":")[0]
    return peer


def _parse(address: str) -> IPv4Address | IPv6Address | None:
    try:
        parsed = ip_address(address.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    # An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d.
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


class TrustedProxies:
    def __init__(self, networks: Iterable[Network]) -> None:
        self._networks = tuple(networks)

    def trusts(self, ip: str) -> bool:
        address = _parse(ip)
        return address is not None and any(
            address.version == network.version and address in network for network in self._networks
        )

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """The peer's IP, or the last `x-forwarded-for` address when the peer is trusted
        (and that address is a valid IP)."""
        ip = peer_ip(peer)
        if not forwarded_for or not self.trusts(ip):
            return ip
        forwarded = _parse(forwarded_for.rpartition(",")[2])
        return ip if forwarded is None else str(forwarded)
