"""Running one gateway process with graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

from aiohttp import web

from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.logs import configure as configure_logs


def serve(config: GatewayConfig, *, verbose: bool = False) -> None:
    configure_logs(config.logging.format, verbose=verbose, replace=True)
    app = create_app(config)
    web.run_app(app, host=config.server.host, port=config.server.port,
                shutdown_timeout=config.server.shutdown_timeout, access_log=None,
                reuse_port=config.server.reuse_port or None,
                print=lambda _msg: print(
                    f"tongban {config.member_id} serving on "
                    f"http://{config.server.host}:{config.server.port}", flush=True))
