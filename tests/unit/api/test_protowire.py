"""The shared protobuf wire primitives, held to the ``protobuf`` runtime (upb) where it speaks the same bytes."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2
from hypothesis import given
from hypothesis import strategies as st

from controlplane.api.protowire import LEN, VARINT, Malformed, field, fields, read_varint, varint


@given(st.integers(min_value=-(2**63), max_value=2**64 - 1))
def test_varint_round_trips_and_negatives_take_ten_bytes(n: int) -> None:
    data = varint(n)
    value, end = read_varint(data, 0)
    assert end == len(data)
    assert value == (n + (1 << 64) if n < 0 else n)
    if n < 0:
        assert len(data) == 10


@given(st.text(max_size=300), st.integers(min_value=0, max_value=2**31 - 1), st.binary(max_size=300))
def test_fields_read_what_the_protobuf_runtime_writes(name: str, number: int, value: bytes) -> None:
    # FieldDescriptorProto: name (1, string), number (3, int32), default_value (7, string)
    msg = descriptor_pb2.FieldDescriptorProto(name=name, number=number, default_value=value.hex())
    got = fields(msg.SerializeToString())
    assert (1, LEN, name.encode()) in got and (7, LEN, value.hex().encode()) in got
    assert (3, VARINT, number) in got or number == 0  # proto3-style zero is not written
    # and what we write, the runtime reads
    ours = field(1, name.encode()) + varint(3 << 3 | VARINT) + varint(number) + field(7, value.hex().encode())
    back = descriptor_pb2.FieldDescriptorProto.FromString(ours)
    assert (back.name, back.number, back.default_value) == (name, number, value.hex())


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x08", "truncated varint"),  # field 1 varint, no value
        (b"\x0a\x05abc", "truncated field"),  # 5 bytes announced, 3 given
        (b"\x09\x00\x00", "truncated field"),  # fixed64 cut short
        (b"\x0b", "unsupported wire type 3"),  # a group
        (b"\x08" + b"\xff" * 11 + b"\x01", "varint too long"),
    ],
)
def test_malformed_messages_are_named(data: bytes, why: str) -> None:
    with pytest.raises(Malformed, match=why):
        fields(data)
