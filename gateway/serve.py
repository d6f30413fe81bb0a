"""Running one gateway process with graceful shutdown on SIGTERM/SIGINT.

On the signal the listening socket closes at once (a load balancer's next try goes to another
process), then the requests in flight get up to `server.shutdown_timeout` seconds to finish,
and only then does the application stop (delivery, registry polling, the database).

We wait for the requests ourselves instead of leaving it to aiohttp's shutdown: aiohttp marks
every connection as closing before it waits, and from then on drops whatever the client still
sends, so a request whose body was still arriving (a material upload) was cut off mid-body.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.logs import configure as configure_logs

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class InFlight:
    """Counts the requests being handled, so a stop can wait for them."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.count += 1
        self._idle.clear()
        try:
            return await handler(request)
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def finished(self, within: float) -> bool:
        """True once no request is in flight; False if some still are after `within` s."""
        deadline = time.monotonic() + within
        while self.count:  # a kept-alive connection may still bring one in meanwhile
            try:
                await asyncio.wait_for(self._idle.wait(), max(deadline - time.monotonic(), 0))
            except TimeoutError:
                return False
        return True


def serve(config: GatewayConfig, *, verbose: bool = False) -> None:
    configure_logs(config.logging.format, verbose=verbose, replace=True)
    app = create_app(config)
    asyncio.run(_serve(app, config))


async def _serve(app: web.Application, config: GatewayConfig) -> None:
    in_flight = InFlight()
    app.middlewares.append(in_flight.middleware)
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           shutdown_timeout=config.server.shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.server.host, config.server.port,
                           reuse_port=config.server.reuse_port or None)
        await site.start()
        print(f"tongban {config.member_id} serving on "
              f"http://{config.server.host}:{config.server.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await site.stop()  # no new connections from here on
        timeout = config.server.shutdown_timeout
        if in_flight.count:
            log.info("stopping: waiting up to %.1f s for %d request(s) in flight", timeout,
                     in_flight.count)
        if not await in_flight.finished(within=timeout):
            log.warning("stopping: %d request(s) still in flight after %.1f s are cut off",
                        in_flight.count, timeout)
    finally:
        await runner.cleanup()
