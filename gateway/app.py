"""The aiohttp application factory: wiring only, no decisions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from adapters.base import RegionAdapter
from gateway import appkeys as K
from gateway.adapter_loading import build as build_adapter
from gateway.adapter_loading import check as check_adapter
from gateway.adapter_loading import discover
from gateway.blobs.receive import BlobReceiver
from gateway.blobs.send import BlobUploader
from gateway.blobs.store import BlobStore
from gateway.cases.access import Authenticator
from gateway.cases.certs import CertRequestHandler, CertResponseHandler, CertService
from gateway.cases.inbound import CaseMessageHandler
from gateway.cases.limits import FailureLimiter
from gateway.cases.local import LocalBridge
from gateway.cases.service import CaseService, CaseSettings
from gateway.cases.workdays import WorkCalendar
from gateway.config import GatewayConfig, check_serving
from gateway.db.auth_repo import AuthRepo
from gateway.db.batching import GroupCommitter
from gateway.db.case_repo import CaseRepo
from gateway.db.cert_repo import CertRepo
from gateway.db.engine import make_engine
from gateway.db.jti_repo import RequestJtiRepo
from gateway.db.local_repo import LocalRepo
from gateway.db.migrate import require_current
from gateway.db.repos import DestinationRepo, InboxRepo, OutboxRepo, RegistryRepo
from gateway.db.sso_repo import SsoRepo
from gateway.federation.inbox import Inbox, InboxSettings
from gateway.federation.messages import (
    CASE_TYPES,
    HandlerRegistry,
    StoreOnlyCaseHandler,
    default_handlers,
)
from gateway.federation.messages import CertHandler as PlainCertRequest
from gateway.federation.messages import CertResponseHandler as PlainCertResponse
from gateway.federation.messages import SsoLogoutHandler as PlainSsoLogout
from gateway.federation.outbox import (
    DeliveryContext,
    Dispatcher,
    MessageSealer,
    endpoint_allowed,
)
from gateway.federation.registry_updates import RegistryUpdatedHandler
from gateway.http import adapters as adapters_http
from gateway.http import admin, api, blobs, console, federation, ops, portal, registry, sso
from gateway.http.portal_settings import PortalSettings
from gateway.http.problems import problem_middleware
from gateway.keystore import KeyStore, Signer
from gateway.metrics import Metrics
from gateway.registry_client import (
    HttpRegistrySource,
    RegistryHolder,
    RegistrySource,
    RepoRegistrySource,
)
from gateway.sso.accounts import PSEUDONYM_SECRET
from gateway.sso.exchange import TokenExchange
from gateway.sso.home import HomeSignOn
from gateway.sso.logout import SsoLogoutHandler
from gateway.sso.oidc import OidcLogin
from registry.catalog import load_catalog
from trust import credentials
from trust.anchor import load_anchor
from trust.clock import Clock, system_clock
from trust.errors import ConfigError

log = logging.getLogger(__name__)


def create_app(config: GatewayConfig, *, clock: Clock = system_clock,
               handlers: HandlerRegistry | None = None,
               registry_source: RegistrySource | None = None,
               adapter_classes: dict[str, type[RegionAdapter]] | None = None
               ) -> web.Application:
    """Build a gateway; resources open in `cleanup_ctx` order and close in reverse."""
    app = web.Application(middlewares=[problem_middleware],
                          client_max_size=config.federation.max_message_bytes)
    app[K.CONFIG] = config
    app[K.CLOCK] = clock
    app[K.METRICS] = Metrics()
    keys = KeyStore(config.keys.dir, config.key_passphrase())
    keys.load()
    app[K.KEYS] = keys
    app[K.SIGNER] = Signer(config.member_id, keys)
    app[K.HANDLERS] = handlers if handlers is not None else default_handlers()
    check_serving(config)
    app[K.ADAPTER_CLASSES] = adapter_classes if adapter_classes is not None else discover()
    check_adapter(config, app[K.ADAPTER_CLASSES])
    anchor = load_anchor(config.trust.anchor)
    blob_store = BlobStore(config.materials.dir, max_bytes=config.materials.max_bytes)
    blob_store.open()
    app[K.BLOBS] = blob_store
    if not config.is_operator and not endpoint_allowed(config.registry_url(),
                                                       config.federation.development_mode):
        raise ConfigError("registry.url: must be https:// (plain http only to loopback or with "
                          "federation.development_mode = true)")

    async def database(app: web.Application) -> AsyncIterator[None]:
        engine = make_engine(config.database.url, pool_size=config.database.pool_size)
        try:
            await require_current(engine)
        except Exception:
            await engine.dispose()
            raise
        app[K.ENGINE] = engine
        app[K.REGISTRY_REPO] = RegistryRepo(engine)
        committer = GroupCommitter(engine)
        app[K.COMMITTER] = committer
        yield
        await committer.close()
        await engine.dispose()

    async def http_client(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, limit_per_host=64),
            headers={"User-Agent": "tongban/0.1"})
        app[K.HTTP_CLIENT] = session
        yield
        await session.close()

    async def trust_registry(app: web.Application) -> AsyncIterator[None]:
        source = registry_source
        if source is None:
            source = (RepoRegistrySource(app[K.REGISTRY_REPO]) if config.is_operator else
                      HttpRegistrySource(app[K.HTTP_CLIENT], config.registry_url(),
                                         config.registry.fetch_timeout))
        holder = RegistryHolder(anchor=anchor, repo=app[K.REGISTRY_REPO], source=source,
                                clock=clock,
                                min_refresh_interval=config.registry.refresh_min_interval)
        store = app[K.KEYS]

        async def reload_keys(_snapshot: object) -> None:
            # A new registry may list a key we created after start-up (rotation).
            store.reload_if_changed()

        holder.on_change(reload_keys)
        await holder.load()
        await holder.refresh()
        app[K.HOLDER] = holder
        app[K.HANDLERS].register("registry.updated", RegistryUpdatedHandler(holder))
        interval = (min(config.registry.poll_interval, config.delivery.poll_interval)
                    if config.is_operator else config.registry.poll_interval)
        task = asyncio.create_task(holder.poll_forever(interval), name="registry-poll")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def messaging(app: web.Application) -> AsyncIterator[None]:
        engine = app[K.ENGINE]
        # Outgoing messages are signed in the transaction that queues them (MessageSealer).
        sealer = MessageSealer(member_id=config.member_id, signer=app[K.SIGNER],
                               holder=app[K.HOLDER], message_ttl=config.federation.message_ttl)
        app[K.OUTBOX_REPO] = OutboxRepo(engine, seal=sealer.seal)
        ctx = DeliveryContext(
            member_id=config.member_id, repo=app[K.OUTBOX_REPO], committer=app[K.COMMITTER],
            destinations=DestinationRepo(engine), holder=app[K.HOLDER], sealer=sealer,
            session=app[K.HTTP_CLIENT], settings=config.delivery,
            development_mode=config.federation.development_mode,
            endpoint_overrides={k: v.endpoint for k, v in config.peers.items() if v.endpoint},
            clock=clock,
            metrics=app[K.METRICS],
            uploader=BlobUploader(member_id=config.member_id, store=blob_store,
                                  signer=app[K.SIGNER], session=app[K.HTTP_CLIENT], clock=clock,
                                  request_timeout=config.delivery.request_timeout))
        dispatcher = Dispatcher(ctx)
        app[K.DISPATCHER] = dispatcher
        pending: set[asyncio.Task[None]] = set()

        def peer_seen(member_id: str) -> None:
            if not dispatcher.backed_off(member_id):
                return  # the common case: nothing to forget, no task per inbound message
            task = asyncio.create_task(dispatcher.peer_seen(member_id))
            pending.add(task)
            task.add_done_callback(pending.discard)

        app[K.INBOX] = Inbox(
            settings=InboxSettings(member_id=config.member_id,
                                   max_skew=config.federation.max_skew),
            holder=app[K.HOLDER], signer=app[K.SIGNER], engine=engine,
            committer=app[K.COMMITTER], repo=InboxRepo(),
            handlers=app[K.HANDLERS], clock=clock, on_peer_seen=peer_seen,
            metrics=app[K.METRICS],
            blob_size=blob_store.size)
        app[K.BLOB_RECEIVER] = BlobReceiver(
            member_id=config.member_id, holder=app[K.HOLDER], store=blob_store,
            committer=app[K.COMMITTER], jtis=RequestJtiRepo(), clock=clock,
            max_skew=config.federation.max_skew)
        task = asyncio.create_task(dispatcher.run(), name="outbox-dispatcher")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Deliveries on the wire get as long to finish as in-flight requests got.
        await dispatcher.close(grace=config.server.shutdown_timeout)
        await asyncio.gather(*pending, return_exceptions=True)

    app.cleanup_ctx.extend([database, http_client, trust_registry, messaging,
                            _cases(config, clock)])
    if config.is_operator:
        app.cleanup_ctx.append(_operator_republisher(config, clock))
    app.add_routes(federation.routes)
    app.add_routes(blobs.routes)
    app.add_routes(registry.routes)
    app.add_routes(api.routes)
    app.add_routes(sso.routes)
    app.add_routes(portal.routes)
    app.add_routes(adapters_http.routes)
    app.add_routes(ops.routes)
    app.add_routes(admin.routes)
    app.add_routes(console.routes)
    return app


def _cases(config: GatewayConfig, clock: Clock):  # type: ignore[no-untyped-def]
    """Cases, their API and their clocks; needs the database, registry and delivery."""
    catalog = load_catalog(config.cases.catalog)

    async def cases(app: web.Application) -> AsyncIterator[None]:
        engine = app[K.ENGINE]
        auth_repo = AuthRepo(engine)
        secret = await auth_repo.secret(PSEUDONYM_SECRET, credentials.new_secret())
        dispatcher = app[K.DISPATCHER]
        blobs = app[K.BLOBS]
        service = CaseService(
            engine=engine, repo=CaseRepo(), outbox=app[K.OUTBOX_REPO], catalog=catalog,
            holder=app[K.HOLDER], clock=clock, calendar=WorkCalendar(),
            settings=CaseSettings(member_id=config.member_id,
                                  supplement_notice_days=config.cases.supplement_notice_days,
                                  supplement_reply_days=config.cases.supplement_reply_days),
            pseudonym_secret=secret, notify=dispatcher.notify, blob_present=blobs.has)
        app[K.CASES] = service
        app[K.QUERY_LIMITER] = FailureLimiter(clock)
        clients = {cid: c.secret(cid) for cid, c in config.api.clients.items()}
        app[K.AUTH] = Authenticator(repo=auth_repo, clients=clients, clock=clock,
                                    session_ttl=config.api.session_ttl,
                                    applicant_key=service.applicant_key)
        app[K.AUTH_REPO] = auth_repo
        sso_repo = SsoRepo(engine)
        subject_secret = await auth_repo.secret("sso-subject", credentials.new_secret())
        app[K.SSO_HOME] = HomeSignOn(
            member_id=config.member_id, engine=engine, signer=app[K.SIGNER],
            holder=app[K.HOLDER], sso_repo=sso_repo, auth_repo=auth_repo,
            outbox=app[K.OUTBOX_REPO], applicant_key=service.applicant_key, clock=clock,
            subject_secret=subject_secret.encode(), session_ttl=config.sso.session_ttl,
            send_idn=config.sso.send_idn, notify=dispatcher.notify)
        app[K.OIDC] = OidcLogin(settings=config.sso.oidc, session=app[K.HTTP_CLIENT],
                                home=app[K.SSO_HOME], clock=clock)
        app[K.SSO_EXCHANGE] = TokenExchange(
            member_id=config.member_id, holder=app[K.HOLDER], repo=sso_repo,
            applicant_key=service.applicant_key, clock=clock, catalog=catalog,
            session_ttl=config.sso.session_ttl)
        csrf = await auth_repo.secret("portal-csrf", credentials.new_secret())
        app[K.PORTAL] = PortalSettings(
            member_name=config.member.name or config.member_id, csrf_secret=csrf.encode(),
            secure_cookie=config.server.endpoint().startswith("https://"),
            cookie_name="tb_" + config.member_id.replace("-", "_"))
        cert_repo = CertRepo()
        service.certs = CertService(service, cert_repo)
        handler = CaseMessageHandler(service)
        registry = app[K.HANDLERS]
        for type_ in CASE_TYPES:
            current = registry.get(type_)
            if current is None or isinstance(current, StoreOnlyCaseHandler):
                registry.register(type_, handler)
        # Placeholders of the message layer give way to the real certificate checks.
        if isinstance(registry.get("cert.verify_request"), PlainCertRequest):
            registry.register("cert.verify_request",
                              CertRequestHandler(service.certs, service))
        if isinstance(registry.get("cert.verify_response"), PlainCertResponse):
            registry.register("cert.verify_response", CertResponseHandler(cert_repo, service))
        if isinstance(registry.get("sso.logout"), PlainSsoLogout):
            registry.register("sso.logout", SsoLogoutHandler())

        async def scan() -> None:
            while True:
                await asyncio.sleep(config.cases.scan_interval)
                try:
                    result = await service.scan_clocks()
                    result["idempotency_keys_swept"] = await service.sweep_idempotency_keys()
                    if any(result.values()):
                        log.info("case clocks: %s", result)
                except Exception:
                    log.exception("case clock scan failed")

        tasks = [asyncio.create_task(scan(), name="case-clocks")]
        adapter = build_adapter(config, app[K.ADAPTER_CLASSES], app[K.HTTP_CLIENT])
        if adapter is not None:
            bridge = LocalBridge(adapter=adapter, repo=LocalRepo(engine), service=service,
                                 settings=config.adapter, clock=clock)
            bridge.metrics = app[K.METRICS]
            service.local = bridge
            app[K.LOCAL] = bridge
            tasks.append(asyncio.create_task(bridge.run(), name="local-calls"))
            tasks.append(asyncio.create_task(bridge.poll_forever(), name="local-poll"))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    return cases


def _operator_republisher(config: GatewayConfig, clock: Clock):  # type: ignore[no-untyped-def]
    """Keep the registry from expiring: republish when less than `republish_before` remains."""
    from gateway.alliance import Alliance

    async def republisher(app: web.Application) -> AsyncIterator[None]:
        assert config.operator is not None
        alliance = Alliance(config=config, engine=app[K.ENGINE], keys=app[K.KEYS], clock=clock)
        margin = config.operator.republish_before

        async def loop() -> None:
            while True:
                snapshot = app[K.HOLDER].current
                if snapshot is not None and snapshot.exp - clock() < margin:
                    try:
                        published = await alliance.republish()
                        log.info("registry republished as version %d", published.version)
                        await app[K.HOLDER].refresh()
                        app[K.DISPATCHER].notify()
                    except Exception:
                        log.exception("automatic registry republication failed")
                await asyncio.sleep(min(60.0, max(1.0, margin / 10)))

        task = asyncio.create_task(loop(), name="registry-republisher")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return republisher
