"""The benchmark's baseline: a bare aiohttp reverse proxy with no security at all.

    python bench/baseline_proxy.py --upstream URL [--host 127.0.0.1] [--port 0] [--port-file F]

GET /v1/... is forwarded to the upstream (the same path and query) through one pooled
ClientSession, and the upstream's status, content type and body are returned as they are. No
token, no licence, no filtering, no audit, no tracing: what the gateway costs is the difference
between the gateway and this. It is built like the gateway where they overlap (aiohttp server
without access log, one TCPConnector with the gateway's default pool of 100 connections,
keep-alive 30 s), so the difference is the security work and nothing else.

With `--port 0` the system picks a port; `--port-file` receives it (written whole, by rename,
once the socket listens).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


async def forward(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION]
    async with session.get(request.app[UPSTREAM] + request.raw_path, allow_redirects=False) as resp:
        body = await resp.read()
        return web.Response(status=resp.status, body=body, content_type=resp.content_type)


def make_app(upstream: str, pool_size: int = 100) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        connector = aiohttp.TCPConnector(limit=pool_size, keepalive_timeout=30)
        timeout = aiohttp.ClientTimeout(total=7, sock_connect=2, sock_read=5)
        app[SESSION] = aiohttp.ClientSession(connector=connector, timeout=timeout)
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_get("/v1/{tail:.*}", forward)
    return app


def _write_port(port_file: Path, port: int) -> None:
    tmp = port_file.with_name(port_file.name + ".tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(port_file)


def _remove(port_file: Path) -> None:
    port_file.unlink(missing_ok=True)


async def serve(upstream: str, host: str, port: int, port_file: Path | None) -> None:
    runner = web.AppRunner(make_app(upstream), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    # Settled like the gateway (gateway.app.settle_heap): the comparison is of the work per
    # request, not of garbage-collector settings.
    gc.collect()
    gc.freeze()
    gc.set_threshold(5000, 10, 10)
    server: Any = site._server
    bound = server.sockets[0].getsockname()[1] if server is not None and server.sockets else port
    if port_file is not None:
        _write_port(port_file, bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        if port_file is not None:
            _remove(port_file)


def main() -> None:
    parser = argparse.ArgumentParser(description="Bare aiohttp reverse proxy (the benchmark baseline).")
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path)
    args = parser.parse_args()
    asyncio.run(serve(args.upstream, args.host, args.port, args.port_file))


if __name__ == "__main__":
    main()
