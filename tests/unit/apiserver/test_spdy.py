"""The SPDY/3.1 framer: the dictionary, exact encodings, round trips, header compression contexts,
frames split anywhere across input slices, and clear errors for bytes that are not SPDY/3."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.apiserver import spdy


def test_dictionary_is_the_spdy3_one() -> None:
    # The spec's dictionary is identified by its Adler-32 in every zlib stream that uses it.
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


def test_exact_encodings() -> None:
    w = spdy.FrameWriter()
    assert w.encode(spdy.Ping(7)) == bytes.fromhex("80030006 00000004 00000007")
    assert w.encode(spdy.DataFrame(3, b"hi", fin=True)) == bytes.fromhex("00000003 01000002") + b"hi"
    assert w.encode(spdy.DataFrame(5, b"")) == bytes.fromhex("00000005 00000000")
    assert w.encode(spdy.RstStream(1, spdy.CANCEL)) == bytes.fromhex("80030003 00000008 00000001 00000005")
    assert w.encode(spdy.GoAway(9, 0)) == bytes.fromhex("80030007 00000008 00000009 00000000")
    assert w.encode(spdy.WindowUpdate(1, 65536)) == bytes.fromhex("80030009 00000008 00000001 00010000")


def test_every_frame_round_trips_through_one_connection() -> None:
    frames: list[spdy.Frame] = [
        spdy.SynStream(1, {"streamtype": "error", "port": "8080", "requestid": "0"}, priority=2),
        spdy.SynStream(3, {"streamtype": "data", "port": "8080", "requestid": "0"}, fin=True, unidirectional=True),
        spdy.SynReply(1),
        spdy.SynReply(3, {"x": "a\x00b"}, fin=True),
        spdy.HeadersFrame(3, {"trailer": "yes"}),
        spdy.DataFrame(3, b"\x00\xffpayload", fin=True),
        spdy.RstStream(3, spdy.REFUSED_STREAM),
        spdy.Settings({4: 100, 7: 65536}, clear=True),
        spdy.Ping(0xFFFFFFFF),
        spdy.GoAway(3, 1),
        spdy.WindowUpdate(3, 1000),
        spdy.UnknownControl(12, 0, b"whatever"),
    ]
    w, r = spdy.FrameWriter(), spdy.FrameReader()
    wire = b"".join(w.encode(f) for f in frames)
    assert r.feed(wire) == frames
    assert r.buffered == 0


def test_header_blocks_share_one_context_per_direction() -> None:
    w = spdy.FrameWriter()
    first = w.encode(spdy.SynStream(1, {"streamtype": "error", "port": "80", "requestid": "0"}))
    second = w.encode(spdy.SynStream(3, {"streamtype": "data", "port": "80", "requestid": "0"}))
    # A fresh peer context, made only from zlib and the dictionary, decodes our blocks in order.
    peer = zlib.decompressobj(zdict=spdy.DICTIONARY)
    assert spdy.unpack_headers(peer.decompress(first[18:])) == {"streamtype": "error", "port": "80", "requestid": "0"}
    assert spdy.unpack_headers(peer.decompress(second[18:]))["streamtype"] == "data"
    # The first block announces the dictionary by its id (FDICT); the second one is only
    # meaningful in the same context: a new context cannot start there.
    cmf_flg, dictid = struct.unpack("!HI", first[18:24])
    assert cmf_flg & 0x20 and dictid == 0xE3C6A7C2
    with pytest.raises(zlib.error):
        zlib.decompressobj(zdict=spdy.DICTIONARY).decompress(second[18:])
    # Each block ends with a sync flush, so it is decodable on its own arrival.
    assert second.endswith(b"\x00\x00\xff\xff")


def test_reader_decodes_blocks_from_an_independent_compressor() -> None:
    """What kubectl sends: zlib with the dictionary, sync-flushed per frame, one context."""
    z = zlib.compressobj(zdict=spdy.DICTIONARY)
    r = spdy.FrameReader()
    for sid, kind in ((1, "error"), (3, "data")):
        block = z.compress(spdy.pack_headers({"streamtype": kind, "port": "9090", "requestid": "4"}))
        block += z.flush(zlib.Z_SYNC_FLUSH)
        payload = struct.pack("!IIBB", sid, 0, 0, 0) + block
        wire = struct.pack("!HHI", 0x8003, spdy.SYN_STREAM, len(payload)) + payload
        (frame,) = r.feed(wire)
        assert frame == spdy.SynStream(sid, {"streamtype": kind, "port": "9090", "requestid": "4"})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=12), st.binary(max_size=300))
def test_frames_split_anywhere_reassemble(cuts: list[int], payload: bytes) -> None:
    w = spdy.FrameWriter()
    frames: list[spdy.Frame] = [
        spdy.SynStream(1, {"streamtype": "error", "port": "1", "requestid": "0"}),
        spdy.DataFrame(1, payload),
        spdy.Ping(3),
        spdy.SynReply(1, {"a": "b"}),
        spdy.DataFrame(1, b"", fin=True),
    ]
    wire = b"".join(w.encode(f) for f in frames)
    r = spdy.FrameReader()
    got: list[spdy.Frame] = []
    prev = 0
    for cut in [*sorted({min(c, len(wire)) for c in cuts}), len(wire)]:
        got += r.feed(wire[prev:cut])
        prev = cut
    assert got == frames and r.buffered == 0


def test_incomplete_frames_wait_for_more() -> None:
    wire = spdy.FrameWriter().encode(spdy.DataFrame(1, b"abcdef"))
    r = spdy.FrameReader()
    assert r.feed(wire[:3]) == [] and r.buffered == 3
    assert r.feed(wire[3:10]) == [] and r.buffered == 10
    assert r.feed(wire[10:]) == [spdy.DataFrame(1, b"abcdef")]


def test_large_data_is_split_at_the_length_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spdy, "MAX_LENGTH", 4)
    wire = spdy.data_frames(5, b"0123456789", fin=True)
    assert spdy.FrameReader().feed(wire) == [
        spdy.DataFrame(5, b"0123"),
        spdy.DataFrame(5, b"4567"),
        spdy.DataFrame(5, b"89", fin=True),
    ]


def test_not_spdy3_is_a_protocol_error() -> None:
    with pytest.raises(spdy.ProtocolError, match="unsupported SPDY version 2"):
        spdy.FrameReader().feed(struct.pack("!HHI", 0x8002, spdy.PING, 4) + b"\x00\x00\x00\x01")
    with pytest.raises(spdy.ProtocolError, match="does not inflate"):
        spdy.FrameReader().feed(struct.pack("!HHI", 0x8003, spdy.SYN_REPLY, 8) + b"\x00\x00\x00\x01garb")
    with pytest.raises(spdy.ProtocolError, match="too short"):
        spdy.FrameReader().feed(struct.pack("!HHI", 0x8003, spdy.RST_STREAM, 4) + b"\x00\x00\x00\x01")
    with pytest.raises(spdy.ProtocolError, match="truncated"):
        spdy.unpack_headers(struct.pack("!II", 1, 10) + b"abc")


def test_header_names_are_sent_lowercase() -> None:
    assert spdy.unpack_headers(spdy.pack_headers({"StreamType": "data"})) == {"streamtype": "data"}
