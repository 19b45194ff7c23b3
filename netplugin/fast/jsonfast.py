"""JSON for the CNI exec path without importing :mod:`json`.

Role: the plugins parse their config from stdin and print results as JSON on every exec, and
``import json`` costs ~8 ms here (``json.decoder`` pulls in ``re``, ``enum``, ``functools`` and
``collections``), most of a reference plugin's whole ADD. The C accelerator ``_json`` that the
stdlib module wraps needs none of that: its scanner reads its options from any object with the
right attributes and its encoder takes them as arguments. This module drives ``_json`` directly
and falls back to :mod:`json` where ``_json`` is missing (other Python implementations).

Invariants: ``loads`` accepts exactly RFC 8259 JSON (no NaN/Infinity, no trailing data) and
raises :class:`DecodeError` (a ``ValueError``) naming the offset; ``dumps`` is compact ASCII JSON.
"""

from __future__ import annotations

TYPE_CHECKING = False  # no `typing` at run time on the exec path: netplugin/fast/README.md
if TYPE_CHECKING:
    from typing import Any


class DecodeError(ValueError):
    pass


_WS = " \t\n\r"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_default(obj: object) -> Any:
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


try:
    import _json

    class _ScanContext:
        # The attribute names are the ones _json.make_scanner reads (json.decoder.JSONDecoder's).
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = staticmethod(_reject_constant)
        memo: dict[str, str] = {}

    _scan = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]
    _encode = _json.make_encoder(
        None, _no_default, _json.encode_basestring_ascii, None, ": ", ", ", False, False, False
    )

    def loads(text: str | bytes) -> Any:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DecodeError(f"not UTF-8: {exc}") from None
        n = len(text)
        i = 0
        while i < n and text[i] in _WS:
            i += 1
        try:
            value, end = _scan(text, i)
        except StopIteration as stop:
            raise DecodeError(f"expecting a JSON value at offset {stop.value}") from None
        except (ValueError, SystemError):
            # The C scanner raises json.JSONDecodeError only when json.decoder is already
            # loaded (it looks in sys.modules, SystemError otherwise): on this error path, pay
            # for the import and let the stdlib describe the problem.
            import json

            try:
                json.loads(text)
            except ValueError as exc:
                raise DecodeError(str(exc)) from None
            raise DecodeError("invalid JSON") from None
        while end < n and text[end] in _WS:
            end += 1
        if end != n:
            raise DecodeError(f"extra data after the JSON value at offset {end}")
        return value

    def dumps(obj: Any) -> str:
        return "".join(_encode(obj, 0))

except ImportError:  # pragma: no cover - CPython always has _json
    import json as _stdjson

    def loads(text: str | bytes) -> Any:
        try:
            return _stdjson.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            raise DecodeError(str(exc)) from None

    def dumps(obj: Any) -> str:
        return _stdjson.dumps(obj, default=_no_default, allow_nan=False)
