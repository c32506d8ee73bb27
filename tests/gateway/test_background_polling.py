"""Background polling outlives errors it did not expect: a revocation poller that stopped on the
first odd exception (seen: SQLAlchemy's "deque mutated during iteration" while a full disk made
the pool reconnect) would leave tokens revoked elsewhere valid in this process until they expire."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.app import _poll_revocations
from gateway.config import load_settings
from gateway.services import GATEWAY
from tests.conftest import wait_for


class FlakyRevocations:
    """Raises what no handler expects on its first refresh, then refreshes normally."""

    def __init__(self) -> None:
        self.calls = 0

    async def refresh_revocations(self) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("deque mutated during iteration")


async def test_revocation_polling_goes_on_after_an_unexpected_error() -> None:
    oauth = FlakyRevocations()
    stop = asyncio.Event()
    poller = asyncio.create_task(_poll_revocations(oauth, 0.01, stop))  # type: ignore[arg-type]
    try:
        async def polled_again() -> bool:
            return oauth.calls >= 3

        assert await wait_for(polled_again, timeout=5)
        assert not poller.done()
    finally:
        stop.set()
        await poller


def fails_once(calls: list[int], original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def call(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("deque mutated during iteration")
        return await original(*args, **kwargs)

    return call


async def test_licence_polling_and_checkpointing_go_on_after_an_unexpected_error(make_gateway: Any,
                                                                                 tmp_path: Path) -> None:
    """A licence poller that stopped would miss every later licence change or suspension made
    by another process; a checkpointer that stopped would leave the log unsigned."""
    settings = load_settings(environ={}, overrides={
        "database": {"url": f"sqlite:///{tmp_path / 'gateway.db'}"},
        "upstream": {"url": "http://127.0.0.1:9"},
        "audit": {"checkpoint_interval": 0.05},
        "licensing": {"poll_interval": 0.05},
    })
    harness = await make_gateway(settings=settings)
    services = harness.app[GATEWAY]
    polls: list[int] = []
    signs: list[int] = []
    services.licensing.poll_once = fails_once(polls, services.licensing.poll_once)  # type: ignore[method-assign]
    services.checkpointer.sign_latest = fails_once(signs, services.checkpointer.sign_latest)  # type: ignore[method-assign]
    async def both_went_on() -> bool:
        return len(polls) >= 3 and len(signs) >= 3

    assert await wait_for(both_went_on, timeout=10)
