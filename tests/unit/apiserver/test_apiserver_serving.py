"""How ``kubelab apiserver`` serves: coalesced TLS writes, direct ASGI dispatch, GC policy."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from controlplane.apiserver.cli import GC_GEN0_THRESHOLD, CoalescingTransport, DirectApp, tune_gc


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return {"peername": ("127.0.0.1", 1234)}.get(name)


def test_writes_of_one_loop_turn_leave_in_one_write_in_order() -> None:
    async def main() -> None:
        raw = FakeTransport()
        t = CoalescingTransport(raw, asyncio.get_running_loop())
        t.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n")
        t.write(b"{}")
        assert raw.writes == [b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"]
        # A lone write (a watch stream's next chunk) is not held past the end of the loop turn.
        t.write(b"chunk")
        assert raw.writes[1:] == []
        await asyncio.sleep(0)
        assert raw.writes[1:] == [b"chunk"]
        # Whatever is held goes out before a close; everything else is the real transport's.
        t.write(b"last")
        t.close()
        assert raw.writes[2:] == [b"last"] and raw.closed
        assert t.get_extra_info("peername") == ("127.0.0.1", 1234)
        await asyncio.sleep(0)
        assert len(raw.writes) == 3  # the scheduled flush found nothing left to write


def test_a_big_body_is_written_after_the_headers_not_copied_onto_them() -> None:
    async def main() -> None:
        raw = FakeTransport()
        t = CoalescingTransport(raw, asyncio.get_running_loop())
        body = b"x" * (1 << 20)
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(body)
        assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\n", body]

    asyncio.run(main())

    asyncio.run(main())


def test_direct_app_sends_requests_to_the_api_server_and_lifespan_to_the_app() -> None:
    seen: list[tuple[str, str]] = []

    class Target:
        def __init__(self, name: str) -> None:
            self.name = name

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append((self.name, scope["type"]))

    class State:
        apiserver = Target("apiserver")

    class App(Target):
        state = State()

    direct = DirectApp(App("fastapi"))
    for kind in ("lifespan", "http", "websocket"):
        asyncio.run(direct({"type": kind}, None, None))
    assert seen == [("fastapi", "lifespan"), ("apiserver", "http"), ("apiserver", "websocket")]
    assert direct.state.apiserver is direct.server


def test_tune_gc_freezes_startup_objects_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
