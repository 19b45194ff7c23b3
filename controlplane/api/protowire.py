"""The Protocol Buffers wire format: the primitives kubelab's hand-written codecs share.

Role: one home for varints, field keys and length-delimited fields, used by the three places that
speak protobuf without generated code: the Kubernetes protobuf bodies kubectl sends
(``controlplane.apiserver.protobuf``, a reader), the OpenAPI v2 document kubectl asks for
(``controlplane.api.openapi_v2_proto``, a writer) and etcd's ``KV.Txn`` for creates
(``controlplane.storage.etcdgrpc``, both ways). Why by hand: each reads or writes a handful of
messages by field number, and the ``protobuf`` runtime would need the ``.proto`` descriptors of
k8s.io/api, gnostic and etcd compiled in, for no gain in speed on these small messages.

Wire types: 0 varint, 1 64-bit, 2 length-delimited, 5 32-bit (groups, 3 and 4, are not read).
Invariants: ``fields`` never reads past its input: a truncated or malformed message is
``Malformed`` (a ``ValueError``) naming what is wrong. Pure functions; thread-safe.
"""

from __future__ import annotations

VARINT = 0
I64 = 1
LEN = 2
I32 = 5


class Malformed(ValueError):
    """Bytes that are not a protobuf message."""


def varint(n: int) -> bytes:
    """``n`` as a base-128 varint; a negative int64 as its ten-byte two's complement, as protobuf does."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number: int, data: bytes) -> bytes:
    """A length-delimited field (a string, bytes or an embedded message), written even when empty."""
    return varint(number << 3 | LEN) + varint(len(data)) + data


def read_varint(b: bytes, i: int) -> tuple[int, int]:
    """(value, index after it) of the varint at ``b[i]``."""
    result = shift = 0
    n = len(b)
    while True:
        if i >= n:
            raise Malformed("truncated varint")
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        if c < 0x80:
            return result, i
        shift += 7
        if shift > 70:
            raise Malformed("varint too long")


def fields(b: bytes) -> list[tuple[int, int, int | bytes]]:
    """A message's top-level fields in order: (number, wire type, value), the value an int for a
    varint and the raw bytes otherwise."""
    out: list[tuple[int, int, int | bytes]] = []
    i, n = 0, len(b)
    while i < n:
        key, i = read_varint(b, i)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            v, i = read_varint(b, i)
            out.append((number, wire, v))
            continue
        if wire == LEN:
            size, i = read_varint(b, i)
        elif wire == I64:
            size = 8
        elif wire == I32:
            size = 4
        else:
            raise Malformed(f"unsupported wire type {wire}")
        if i + size > n:
            raise Malformed("truncated field")
        out.append((number, wire, b[i : i + size]))
        i += size
    return out
