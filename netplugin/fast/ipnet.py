"""Minimal IPv4/IPv6 address arithmetic for the CNI exec path (stdlib ``ipaddress`` costs ~5 ms
to import, pulling in ``functools`` and ``collections``; the plugins need only a few operations).

An address is an ``IP`` (family 4 or 6, integer value); a network is an ``IPNet`` (family, network
integer, prefix length). Parsing uses ``inet_pton`` so it accepts exactly what the kernel does;
formatting uses ``inet_ntop`` so IPv6 text is canonical (RFC 5952), as Go's ``net.IP.String`` is.
"""

from __future__ import annotations

import _socket

AF = {4: _socket.AF_INET, 6: _socket.AF_INET6}
BITS = {4: 32, 6: 128}


class IP:
    __slots__ = ("family", "value")

    def __init__(self, family: int, value: int) -> None:
        self.family = family
        self.value = value

    @classmethod
    def parse(cls, text: str) -> IP:
        """Parse ``10.0.0.1`` or ``fd00::1``; ValueError naming the text otherwise."""
        if not isinstance(text, str):
            raise ValueError(f"invalid IP address {text!r}")
        fam = 6 if ":" in text else 4
        try:
            packed = _socket.inet_pton(AF[fam], text)
        except OSError:
            raise ValueError(f"invalid IP address {text!r}") from None
        return cls(fam, int.from_bytes(packed, "big"))

    @property
    def packed(self) -> bytes:
        return self.value.to_bytes(BITS[self.family] // 8, "big")

    def __str__(self) -> str:
        return _socket.inet_ntop(AF[self.family], self.packed)

    def __repr__(self) -> str:
        return f"IP({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IP) and other.family == self.family and other.value == self.value

    def __hash__(self) -> int:
        return hash((self.family, self.value))

    def __add__(self, n: int) -> IP:
        return IP(self.family, self.value + n)


class IPNet:
    """A network; ``IPNet.parse("10.0.0.5/24")`` keeps the address given (``ip``) and masks it."""

    __slots__ = ("family", "ip", "network", "prefix")

    def __init__(self, ip: IP, prefix: int) -> None:
        self.family = ip.family
        self.ip = ip
        self.prefix = prefix
        bits = BITS[ip.family]
        mask = ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)
        self.network = IP(ip.family, ip.value & mask)

    @classmethod
    def parse(cls, text: str) -> IPNet:
        if not isinstance(text, str) or text.count("/") != 1:
            raise ValueError(f"invalid CIDR address {text!r}")
        addr, _, plen = text.partition("/")
        ip = IP.parse(addr)
        if not plen.isdigit() or not 0 <= int(plen) <= BITS[ip.family]:
            raise ValueError(f"invalid CIDR address {text!r}")
        return cls(ip, int(plen))

    @property
    def first(self) -> IP:
        return self.network

    @property
    def last(self) -> IP:
        """The highest address of the network (the IPv4 broadcast address)."""
        return IP(self.family, self.network.value | ((1 << (BITS[self.family] - self.prefix)) - 1))

    def contains(self, ip: IP) -> bool:
        return ip.family == self.family and self.network.value <= ip.value <= self.last.value

    def overlaps(self, other: IPNet) -> bool:
        return self.family == other.family and (self.contains(other.network) or other.contains(self.network))

    def with_ip(self, ip: IP) -> str:
        """``ip/prefix`` text: an interface address in this network."""
        return f"{ip}/{self.prefix}"

    def __str__(self) -> str:
        return f"{self.network}/{self.prefix}"

    def __repr__(self) -> str:
        return f"IPNet({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IPNet) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))


def sha256_hex(text: str) -> str:
    """sha256 hex digest via the builtin ``_sha256`` (``hashlib`` costs ~4 ms to import: OpenSSL)."""
    try:
        import _sha256  # type: ignore[import-not-found]

        return str(_sha256.sha256(text.encode()).hexdigest())
    except ImportError:  # pragma: no cover - a Python built without the builtin module
        import hashlib

        return hashlib.sha256(text.encode()).hexdigest()
