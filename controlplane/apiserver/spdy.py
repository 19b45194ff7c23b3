"""SPDY/3.1 framing: frames to bytes and bytes to frames, with SPDY/3 header compression. No I/O.

Role: ``kubectl port-forward`` (and exec before 1.30) speaks SPDY/3.1, the multiplexing layer of
the SPDY draft-3 spec (draft-mbelshe-httpbis-spdy-00, §2). kubectl ≥1.31 carries the very same
byte stream inside binary WebSocket messages (subprotocol ``SPDY/3.1+portforward.k8s.io``), so the
caller concatenates messages and feeds them here; a frame may span messages and one message may
hold many frames.

Wire format (all integers big-endian):
- control frame: ``1 | version(15) = 3 | type(16) | flags(8) | length(24) | payload``;
- data frame: ``0 | stream-id(31) | flags(8) | length(24) | data`` (flag ``FIN`` = 0x01 ends the
  sender's half of the stream);
- SYN_STREAM payload: ``X | stream-id(31) | X | associated-id(31) | priority(3) unused(5) |
  slot(8) | header block``; SYN_REPLY and HEADERS: ``X | stream-id(31) | header block``;
- a header block, once inflated, is ``count(32)`` then per pair ``len(32) name len(32) value``
  (several values of one name are joined by NUL bytes in one value).

Invariants:
- header blocks are zlib streams primed with the SPDY/3 dictionary (``DICTIONARY``); each side
  keeps ONE compression context per direction for the whole connection and ends every block with a
  sync flush, so a ``FrameWriter`` (our direction) and a ``FrameReader`` (the peer's) each live as
  long as the connection and must see every header block in wire order;
- names are sent lowercased (the spec requires it) and read as sent;
- a frame the reader cannot parse raises ``ProtocolError`` (the session must then end: the byte
  stream has lost its framing).

Concurrency: none; a reader or writer belongs to one connection and is used by one task at a time.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3

# Control frame types (draft 3 §2.6).
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes (draft 3 §2.6.3).
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
CANCEL = 5
INTERNAL_ERROR = 6

MAX_LENGTH = 0xFFFFFF  # the 24-bit length field
_STREAM_MASK = 0x7FFFFFFF

Headers = dict[str, str]


class ProtocolError(Exception):
    """The byte stream is not SPDY/3 (bad version, truncated or corrupt header block)."""


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (draft 3 §2.6.10.1): common header names and
    methods, each as a 32-bit length and the bytes, then a run of common values without lengths.
    Built from its parts here; its Adler-32 (0xe3c6a7c2, the id peers check in the zlib header)
    and length (1423) are asserted by the unit tests."""
    words = (
        "options head post put delete trace accept accept-charset accept-encoding accept-language "
        "accept-ranges age allow authorization cache-control connection content-base content-encoding "
        "content-language content-length content-location content-md5 content-range content-type date "
        "etag expect expires from host if-match if-modified-since if-none-match if-range "
        "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
        "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
        "user-agent vary via warning www-authenticate method get status"
    )
    names = words.split()
    names += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
    values = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
        "503 Service Unavailable"
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,"
        "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch"
        "charset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return b"".join(struct.pack("!I", len(n)) + n.encode() for n in names) + values.encode()


DICTIONARY = _dictionary()


# ---- frames ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataFrame:
    stream_id: int
    data: bytes
    fin: bool = False


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers
    associated_id: int = 0
    priority: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    entries: dict[int, int]  # id → value (per-entry flags are dropped on read, sent as 0)
    clear: bool = False


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = 0


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True)
class UnknownControl:
    """A control frame type we do not interpret (the spec says: ignore it)."""

    type: int
    flags: int
    payload: bytes


Frame = (
    DataFrame
    | SynStream
    | SynReply
    | HeadersFrame
    | RstStream
    | Settings
    | Ping
    | GoAway
    | WindowUpdate
    | UnknownControl
)


# ---- header blocks -----------------------------------------------------------------------------


def pack_headers(headers: Headers) -> bytes:
    """The uncompressed name/value block."""
    out = [struct.pack("!I", len(headers))]
    for name, value in headers.items():
        n, v = name.lower().encode(), value.encode()
        out += [struct.pack("!I", len(n)), n, struct.pack("!I", len(v)), v]
    return b"".join(out)


def unpack_headers(block: bytes) -> Headers:
    """An uncompressed name/value block → headers; ``ProtocolError`` when malformed."""
    try:
        (count,) = struct.unpack_from("!I", block, 0)
        pos, out = 4, {}
        for _ in range(count):
            (n,) = struct.unpack_from("!I", block, pos)
            name = block[pos + 4 : pos + 4 + n]
            pos += 4 + n
            (m,) = struct.unpack_from("!I", block, pos)
            value = block[pos + 4 : pos + 4 + m]
            pos += 4 + m
            if len(name) != n or len(value) != m:
                raise ProtocolError("header block truncated")
            out[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    except struct.error:
        raise ProtocolError("header block truncated") from None
    return out


class HeaderCompressor:
    """Our direction's zlib context: one per connection, a sync flush after every block."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(
            zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY
        )

    def compress(self, headers: Headers) -> bytes:
        return self._z.compress(pack_headers(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The peer's zlib context, primed with the dictionary when the stream asks for it."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(15, DICTIONARY)

    def decompress(self, data: bytes) -> Headers:
        try:
            block = self._z.decompress(data)
        except zlib.error as exc:
            raise ProtocolError(f"header block does not inflate: {exc}") from None
        return unpack_headers(block)


# ---- writing -----------------------------------------------------------------------------------


def _control(type_: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_LENGTH:
        raise ValueError(f"control frame payload of {len(payload)} bytes is too long")
    return struct.pack("!HHI", 0x8000 | VERSION, type_, (flags << 24) | len(payload)) + payload


class FrameWriter:
    """Encodes our frames; owns our header compression context (so encode in wire order)."""

    def __init__(self) -> None:
        self._headers = HeaderCompressor()

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, DataFrame):
            return data_frames(frame.stream_id, frame.data, frame.fin)
        if isinstance(frame, SynStream):
            flags = (FLAG_FIN if frame.fin else 0) | (FLAG_UNIDIRECTIONAL if frame.unidirectional else 0)
            head = struct.pack(
                "!IIBB",
                frame.stream_id & _STREAM_MASK,
                frame.associated_id & _STREAM_MASK,
                (frame.priority & 7) << 5,
                0,
            )
            return _control(SYN_STREAM, flags, head + self._headers.compress(frame.headers))
        if isinstance(frame, SynReply | HeadersFrame):
            type_ = SYN_REPLY if isinstance(frame, SynReply) else HEADERS
            payload = struct.pack("!I", frame.stream_id & _STREAM_MASK) + self._headers.compress(frame.headers)
            return _control(type_, FLAG_FIN if frame.fin else 0, payload)
        if isinstance(frame, RstStream):
            return _control(RST_STREAM, 0, struct.pack("!II", frame.stream_id & _STREAM_MASK, frame.status))
        if isinstance(frame, Settings):
            body = struct.pack("!I", len(frame.entries))
            body += b"".join(struct.pack("!II", k & 0xFFFFFF, v) for k, v in frame.entries.items())
            return _control(SETTINGS, 1 if frame.clear else 0, body)
        if isinstance(frame, Ping):
            return _control(PING, 0, struct.pack("!I", frame.ping_id))
        if isinstance(frame, GoAway):
            return _control(GOAWAY, 0, struct.pack("!II", frame.last_good_stream_id & _STREAM_MASK, frame.status))
        if isinstance(frame, WindowUpdate):
            return _control(
                WINDOW_UPDATE, 0, struct.pack("!II", frame.stream_id & _STREAM_MASK, frame.delta & _STREAM_MASK)
            )
        return _control(frame.type, frame.flags, frame.payload)


def data_frames(stream_id: int, data: bytes, fin: bool = False) -> bytes:
    """DATA frame(s) for ``data`` (split at the 24-bit length limit; FIN on the last only)."""
    sid = stream_id & _STREAM_MASK
    chunks = [data[i : i + MAX_LENGTH] for i in range(0, len(data), MAX_LENGTH)] or [b""]
    out = []
    for i, chunk in enumerate(chunks):
        flags = FLAG_FIN if fin and i == len(chunks) - 1 else 0
        out.append(struct.pack("!II", sid, (flags << 24) | len(chunk)) + chunk)
    return b"".join(out)


# ---- reading -----------------------------------------------------------------------------------


class FrameReader:
    """Reassembles frames from arbitrary slices of the byte stream; owns the peer's header context."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._headers = HeaderDecompressor()

    def feed(self, data: bytes) -> list[Frame]:
        """Append ``data``; return every frame it completed, in order (incomplete tails stay buffered)."""
        self._buf += data
        frames: list[Frame] = []
        pos = 0
        buf = self._buf
        while len(buf) - pos >= 8:
            word, flags_len = struct.unpack_from("!II", buf, pos)
            length = flags_len & 0xFFFFFF
            if len(buf) - pos - 8 < length:
                break
            payload = bytes(buf[pos + 8 : pos + 8 + length])
            pos += 8 + length
            flags = flags_len >> 24
            if word & 0x80000000:
                frames.append(self._control((word >> 16) & 0x7FFF, word & 0xFFFF, flags, payload))
            else:
                frames.append(DataFrame(word & _STREAM_MASK, payload, bool(flags & FLAG_FIN)))
        del buf[:pos]
        return frames

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame waiting for more input."""
        return len(self._buf)

    def _control(self, version: int, type_: int, flags: int, p: bytes) -> Frame:
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version} (kubelab speaks SPDY/3.1)")
        fin = bool(flags & FLAG_FIN)
        try:
            if type_ == SYN_STREAM:
                sid, assoc, pri = struct.unpack_from("!IIB", p, 0)
                return SynStream(
                    sid & _STREAM_MASK,
                    self._headers.decompress(p[10:]),
                    assoc & _STREAM_MASK,
                    pri >> 5,
                    fin,
                    bool(flags & FLAG_UNIDIRECTIONAL),
                )
            if type_ in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from("!I", p, 0)
                headers = self._headers.decompress(p[4:])
                if type_ == SYN_REPLY:
                    return SynReply(sid & _STREAM_MASK, headers, fin)
                return HeadersFrame(sid & _STREAM_MASK, headers, fin)
            if type_ == RST_STREAM:
                sid, status = struct.unpack_from("!II", p, 0)
                return RstStream(sid & _STREAM_MASK, status)
            if type_ == SETTINGS:
                (count,) = struct.unpack_from("!I", p, 0)
                entries = {}
                for i in range(count):
                    key, value = struct.unpack_from("!II", p, 4 + 8 * i)
                    entries[key & 0xFFFFFF] = value
                return Settings(entries, bool(flags & 1))
            if type_ == PING:
                return Ping(struct.unpack_from("!I", p, 0)[0])
            if type_ == GOAWAY:
                last = struct.unpack_from("!I", p, 0)[0]
                # Status arrived with draft 3; tolerate the 4-byte form of older peers.
                status = struct.unpack_from("!I", p, 4)[0] if len(p) >= 8 else 0
                return GoAway(last & _STREAM_MASK, status)
            if type_ == WINDOW_UPDATE:
                sid, delta = struct.unpack_from("!II", p, 0)
                return WindowUpdate(sid & _STREAM_MASK, delta & _STREAM_MASK)
        except struct.error:
            raise ProtocolError(f"control frame type {type_} is too short ({len(p)} bytes)") from None
        return UnknownControl(type_, flags, p)


__all__ = [
    "DICTIONARY",
    "DataFrame",
    "Frame",
    "FrameReader",
    "FrameWriter",
    "GoAway",
    "HeaderCompressor",
    "HeaderDecompressor",
    "Headers",
    "HeadersFrame",
    "Ping",
    "ProtocolError",
    "RstStream",
    "Settings",
    "SynReply",
    "SynStream",
    "UnknownControl",
    "WindowUpdate",
    "data_frames",
    "pack_headers",
    "unpack_headers",
]
