"""`/metrics` (Prometheus) and `/readyz`: what an operator's monitoring asks a gateway."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from gateway import appkeys as K
from gateway.db.repos import OutboxState
from trust.errors import ErrorCode, TongbanError

routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    app = request.app
    m = app[K.METRICS]
    repo = app[K.OUTBOX_REPO]
    for state in (OutboxState.PENDING, OutboxState.DEAD):
        m.outbox.labels(state).set(await repo.count(state))
    snapshot = app[K.HOLDER].current
    if snapshot is not None:
        now = app[K.CLOCK]()
        m.registry_version.set(snapshot.version)
        m.registry_age.set(now - snapshot.claims.iat)
        m.registry_expires.set(snapshot.exp - now)
    body = generate_latest(m.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready only with a fresh registry and a database that answers."""
    snapshot = request.app[K.HOLDER].current
    if snapshot is None or snapshot.is_expired(request.app[K.CLOCK]()):
        raise TongbanError("no fresh trust registry; federation traffic is stopped",
                           code=ErrorCode.REGISTRY_STALE)
    try:
        async with request.app[K.ENGINE].connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        raise TongbanError("the database does not answer",
                           code=ErrorCode.UNAVAILABLE) from None
    return web.json_response({"status": "ready", "registry_version": snapshot.version})
