"""Typed application state (aiohttp `AppKey`s): each resource under its own key."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.base import RegionAdapter
from gateway.blobs.receive import BlobReceiver
from gateway.blobs.store import BlobStore
from gateway.cases.access import Authenticator
from gateway.cases.limits import FailureLimiter
from gateway.cases.local import LocalBridge
from gateway.cases.service import CaseService
from gateway.config import GatewayConfig
from gateway.db.auth_repo import AuthRepo
from gateway.db.batching import GroupCommitter
from gateway.db.repos import OutboxRepo, RegistryRepo
from gateway.federation.inbox import Inbox
from gateway.federation.messages import HandlerRegistry
from gateway.federation.outbox import Dispatcher
from gateway.http.portal_settings import PortalSettings
from gateway.keystore import KeyStore, Signer
from gateway.metrics import Metrics
from gateway.registry_client import RegistryHolder
from gateway.sso.exchange import TokenExchange
from gateway.sso.home import HomeSignOn
from gateway.sso.oidc import OidcLogin
from trust.clock import Clock

CONFIG = web.AppKey("config", GatewayConfig)
CASES = web.AppKey("cases", CaseService)
AUTH = web.AppKey("auth", Authenticator)
QUERY_LIMITER = web.AppKey("query_limiter", FailureLimiter)
AUTH_REPO = web.AppKey("auth_repo", AuthRepo)
SSO_HOME = web.AppKey("sso_home", HomeSignOn)
SSO_EXCHANGE = web.AppKey("sso_exchange", TokenExchange)
PORTAL = web.AppKey("portal", PortalSettings)
OIDC = web.AppKey("oidc", OidcLogin)
ADAPTER_CLASSES = web.AppKey("adapter_classes", dict[str, type[RegionAdapter]])
LOCAL = web.AppKey("local_bridge", LocalBridge)
METRICS = web.AppKey("metrics", Metrics)
CLOCK = web.AppKey("clock", Clock)
ENGINE = web.AppKey("engine", AsyncEngine)
COMMITTER = web.AppKey("committer", GroupCommitter)
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)
KEYS = web.AppKey("keys", KeyStore)
SIGNER = web.AppKey("signer", Signer)
HOLDER = web.AppKey("registry_holder", RegistryHolder)
REGISTRY_REPO = web.AppKey("registry_repo", RegistryRepo)
OUTBOX_REPO = web.AppKey("outbox_repo", OutboxRepo)
HANDLERS = web.AppKey("handlers", HandlerRegistry)
INBOX = web.AppKey("inbox", Inbox)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
BLOBS = web.AppKey("blobs", BlobStore)
BLOB_RECEIVER = web.AppKey("blob_receiver", BlobReceiver)
