"""Gateway configuration: one TOML file per gateway, every option with a default.

Relative paths are resolved against the config file's folder, so a config directory can be moved
as a whole. Secrets (key passphrases) are never in the TOML: the file names an environment
variable or a file that holds them. A bad value fails at load time, naming the option.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from trust.errors import ConfigError

MemberId = Annotated[str, StringConstraints(pattern=r"^CN-\d{6}$")]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MemberSection(_Section):
    id: MemberId
    """This gateway's member id, `CN-` + GB/T 2260 code (PROTOCOL.md §1)."""
    name: str = ""
    """Display name; used when the operator admits this member from its config."""


class ServerSection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    public_url: str = ""
    shutdown_timeout: float = Field(default=10.0, gt=0)
    reuse_port: bool = False

    def endpoint(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


def read_secret(option: str, *, env: str, path: Path | None, min_length: int = 1) -> str | None:
    """A secret named by `<option>_env` (an environment variable) or `<option>_file` (a file,
    surrounding white space stripped); None when neither is set. Errors name the option."""
    if env:
        value = os.environ.get(env, "")
        if not value:
            raise ConfigError(f"{option}_env: environment variable {env} is not set or empty")
        return value
    if path is None:
        return None
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{option}_file: {reason}") from None
    if not value:
        raise ConfigError(f"{option}_file: the file is empty")
    if len(value) < min_length:
        raise ConfigError(f"{option}_file: the secret must be at least {min_length} characters")
    return value


class DatabaseSection(_Section):
    url: str = "sqlite+aiosqlite:///tongban.db"
    # PostgreSQL connections this process may hold (as many again in bursts); SQLite uses one.
    pool_size: Annotated[int, Field(ge=1, le=100)] = 10
    # The database password never sits in the TOML: it is read from one of these at load.
    password_env: str = ""
    password_file: Path | None = None

    def password(self) -> str | None:
        return read_secret("database.password", env=self.password_env,
                           path=self.password_file)


class KeysSection(_Section):
    dir: Path = Path("keys")
    algorithm: Literal["EdDSA", "ES256"] = "EdDSA"
    passphrase_env: str = ""
    passphrase_file: Path | None = None


class TrustSection(_Section):
    anchor: Path = Path("anchor.json")


class RegistrySection(_Section):
    url: str = ""
    poll_interval: float = Field(default=60.0, gt=0)
    refresh_min_interval: float = Field(default=2.0, ge=0)
    fetch_timeout: float = Field(default=10.0, gt=0)


class FederationSection(_Section):
    development_mode: bool = False
    max_skew: int = Field(default=300, ge=0, le=3600)
    message_ttl: int = Field(default=300, ge=1, le=300)
    max_message_bytes: int = Field(default=1024 * 1024, ge=1024, le=1024 * 1024)


class DeliverySection(_Section):
    initial_backoff: float = Field(default=0.5, gt=0)
    max_backoff: float = Field(default=60.0, gt=0)
    dead_after: float = Field(default=72 * 3600.0, gt=0)
    concurrency: int = Field(default=16, ge=1, le=256)
    request_timeout: float = Field(default=10.0, gt=0)
    poll_interval: float = Field(default=1.0, gt=0)
    claim_lease: float = Field(default=60.0, gt=0)


class MaterialsSection(_Section):
    dir: Path = Path("blobs")
    max_bytes: int = Field(default=50 * 1024 * 1024, ge=1)


class ApiClientSection(_Section):
    """A home portal system calling the portal API (HTTP Basic, client id and secret)."""

    name: str = ""
    secret_env: str = ""
    secret_file: Path | None = None

    def secret(self, client_id: str) -> str:
        value = read_secret(f"api.clients.{client_id}.secret", env=self.secret_env,
                            path=self.secret_file, min_length=16)
        if value is None:
            raise ConfigError(f"api.clients.{client_id}: set secret_env or secret_file")
        return value


class ApiSection(_Section):
    session_ttl: int = Field(default=1800, ge=60, le=24 * 3600)
    clients: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{3,64}$")],
                  ApiClientSection] = {}


class OidcSection(_Section):
    """The region's identity provider, for logins that arrive as OIDC ID tokens."""

    issuer: str = ""
    jwks_url: str = ""
    audience: str = ""
    id_number_claim: str = "idn"
    name_claim: str = "name"
    loa_claim: str = "loa"


class SsoSection(_Section):
    session_ttl: int = Field(default=900, ge=60, le=12 * 3600)
    token_ttl: int = Field(default=120, ge=10, le=300)
    send_idn: bool = True
    local_login: bool = True
    oidc: OidcSection = OidcSection()


class CasesSection(_Section):
    supplement_notice_days: int = Field(default=5, ge=1, le=30)
    supplement_reply_days: int = Field(default=20, ge=1, le=180)
    scan_interval: float = Field(default=300.0, gt=0)
    catalog: Path | None = None


class LoggingSection(_Section):
    format: Literal["text", "json"] = "text"


class AdapterSection(_Section):
    """The handling authority's own case system, reached through a region adapter."""

    name: str = ""
    settings: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    poll_interval: float = Field(default=5.0, gt=0)
    initial_backoff: float = Field(default=1.0, gt=0)
    max_backoff: float = Field(default=300.0, gt=0)
    dead_after: float = Field(default=72 * 3600.0, gt=0)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_reset: float = Field(default=30.0, gt=0)

    def secret_values(self) -> dict[str, str]:
        values = {}
        for key, env in self.secrets.items():
            value = os.environ.get(env, "")
            if not value:
                raise ConfigError(f"adapter.secrets.{key}: environment variable {env} is not "
                                  "set or empty")
            values[key] = value
        return values


class OperatorSection(_Section):
    alliance: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    registry_validity: int = Field(default=7 * 24 * 3600, ge=60, le=7 * 24 * 3600)
    republish_before: int = Field(default=24 * 3600, ge=0)


class PeerSection(_Section):
    endpoint: str = ""


class GatewayConfig(_Section):
    member: MemberSection
    server: ServerSection = ServerSection()
    database: DatabaseSection = DatabaseSection()
    keys: KeysSection = KeysSection()
    trust: TrustSection = TrustSection()
    registry: RegistrySection = RegistrySection()
    federation: FederationSection = FederationSection()
    delivery: DeliverySection = DeliverySection()
    materials: MaterialsSection = MaterialsSection()
    api: ApiSection = ApiSection()
    cases: CasesSection = CasesSection()
    sso: SsoSection = SsoSection()
    adapter: AdapterSection = AdapterSection()
    logging: LoggingSection = LoggingSection()
    operator: OperatorSection | None = None
    peers: dict[MemberId, PeerSection] = {}

    # The folder of the config file: relative paths in free-form tables (adapter settings) are
    # resolved against it by their users.
    _base: Path = PrivateAttr(default=Path("."))

    @property
    def base_dir(self) -> Path:
        return self._base

    @property
    def member_id(self) -> str:
        return self.member.id

    @property
    def is_operator(self) -> bool:
        return self.operator is not None

    def registry_url(self) -> str:
        if self.registry.url:
            return self.registry.url.rstrip("/")
        return f"{self.server.endpoint()}/registry/v1"

    def key_passphrase(self) -> bytes | None:
        value = read_secret("keys.passphrase", env=self.keys.passphrase_env,
                            path=self.keys.passphrase_file)
        return None if value is None else value.encode()


def check_serving(config: GatewayConfig) -> None:
    """Checks that need the whole config: a gateway must know where its registry comes from."""
    if not config.is_operator and not config.registry.url:
        raise ConfigError("registry.url: required for a member (the operator's /registry/v1 URL)")


def _absolute(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else base / path


def _resolve(config: GatewayConfig, base: Path) -> GatewayConfig:
    """Make relative paths (given or default) relative to the config file, not to the cwd."""
    keys = config.keys.model_copy(update={
        "dir": _absolute(config.keys.dir, base),
        "passphrase_file": (None if config.keys.passphrase_file is None
                            else _absolute(config.keys.passphrase_file, base)),
    })
    trust = config.trust.model_copy(update={"anchor": _absolute(config.trust.anchor, base)})
    materials = config.materials.model_copy(
        update={"dir": _absolute(config.materials.dir, base)})
    url = config.database.url
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        rest = url[len(prefix):]
        if rest and not rest.startswith(":memory:"):
            url = prefix + str(base / rest)
    password_file = (None if config.database.password_file is None
                     else _absolute(config.database.password_file, base))
    database = config.database.model_copy(update={"password_file": password_file})
    database = database.model_copy(update={"url": _with_password(url, database)})
    clients = {cid: c.model_copy(update={"secret_file": None if c.secret_file is None
                                         else _absolute(c.secret_file, base)})
               for cid, c in config.api.clients.items()}
    api = config.api.model_copy(update={"clients": clients})
    cases = config.cases.model_copy(update={"catalog": None if config.cases.catalog is None
                                            else _absolute(config.cases.catalog, base)})
    resolved = config.model_copy(update={"keys": keys, "trust": trust, "database": database,
                                         "materials": materials, "api": api, "cases": cases})
    resolved._base = base
    return resolved


def _with_password(url: str, database: DatabaseSection) -> str:
    """The URL the engine connects with: the password from `password_env`/`password_file`
    put in; one written into the config file itself is refused (secrets stay out of TOML)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("database.url: not a database URL") from None
    if parsed.password is not None:
        raise ConfigError("database.url: holds a password; put it in the environment variable "
                          "named by database.password_env or the file named by "
                          "database.password_file instead")
    password = database.password()
    if password is None:
        return url
    if parsed.drivername.startswith("sqlite"):
        raise ConfigError("database.password_env/password_file: SQLite has no password")
    return parsed.set(password=password).render_as_string(hide_password=False)


def parse_config(data: dict[str, Any], *, source: str, base: Path) -> GatewayConfig:
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown option"
        raise ConfigError(f"{source}: {where}: {msg}") from None
    try:
        return _resolve(config, base)
    except ConfigError as exc:  # e.g. the database password: say which file
        raise ConfigError(f"{source}: {exc.detail}") from None


def load_config(path: Path) -> GatewayConfig:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, source=str(path), base=path.resolve().parent)
