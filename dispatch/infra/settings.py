"""Service settings, grouped, read from the environment once and passed around explicitly.

Nothing reads the environment at import time: `Settings.from_env()` is called by the CLI and by
`app.create_app()` when no settings are given, and tests build `Settings` directly.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_int(name: str, default: int) -> int:
    raw = _env(name)
    return int(raw) if raw is not None else default


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(x.strip().lower() for x in (_env(name) or "").split(",") if x.strip())


@dataclass(frozen=True)
class StorageSettings:
    database_url: str | None = None
    """`postgresql+asyncpg://` URL with PostGIS; None → a private server under the data dir."""
    redis_url: str | None = None
    """`redis://` or `unix://` URL; None → a private server under the data dir."""
    redis_cluster: bool = False
    """Treat `redis_url` as a Redis Cluster seed node (`REDIS_CLUSTER=1`)."""
    local_redis: str = "single"
    """With no `redis_url`, what the private Redis is (`DISPATCH_LOCAL_REDIS`): `single`, one
    server on a unix socket, or `cluster`, a local 3-primary Redis Cluster on loopback ports
    (the service then uses it as a cluster, as with `REDIS_CLUSTER=1`)."""
    pool_size: int = 10
    """SQLAlchemy connection pool size per process (and as many again on overflow)."""
    pool_timeout_s: float = 10.0
    """How long a request waits for a pooled connection before it is answered 503
    `service_unavailable` with `Retry-After` (`DISPATCH_DB_POOL_TIMEOUT_S`)."""


@dataclass(frozen=True)
class AuthSettings:
    secret_key: str = ""
    """JWT signing key and the root of the phone-encryption keys."""
    token_ttl_s: int = 7 * 24 * 3600
    """Lifetime of a bearer token issued by OTP login or the CLI."""
    otp_ttl_s: int = 300
    """How long an OTP code stays valid."""
    otp_max_attempts: int = 5
    """Wrong guesses allowed before a code is burnt."""
    otp_per_phone_window_s: int = 3600
    """Window for the per-phone OTP request limit."""
    otp_per_phone_limit: int = 5
    """OTP requests per phone per window."""
    otp_min_interval_s: int = 30
    """Minimum gap between two OTP requests for one phone."""
    otp_per_client_window_s: int = 3600
    """Window for the per-client (IP) OTP request limit."""
    otp_per_client_limit: int = 30
    """OTP requests per client address per window."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path("var"))
    """Where private servers, the generated secret key and local state live."""
    storage: StorageSettings = field(default_factory=StorageSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    public_base_url: str = "http://127.0.0.1:8000"
    """The URL Twilio calls; used for webhook signatures and callback URLs."""
    map_style_url: str | None = None
    """The console's base map (`MAP_STYLE_URL`): an XYZ raster tile URL template
    (`https://…/{z}/{x}/{y}.png`) or a style JSON with a raster source. Unset, the map is the
    shapes on a plain background and needs no internet."""
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_api_base: str | None = None
    """Where the Twilio REST client sends requests instead of api.twilio.com (`TWILIO_API_BASE`):
    a Twilio-compatible gateway, or a local test server. Unset → Twilio itself."""
    vapid_private_key: str | None = None
    vapid_subject: str | None = None
    push_allow_http: bool = False
    """Accept plain-http Web Push endpoints (`PUSH_ALLOW_HTTP=1`; for a local push service in
    tests). Browsers' push services are always https."""
    phone_region: str = "CN"
    """Country (ISO 3166 alpha-2) a phone number typed without a country code is read in, where
    no community tells (`DISPATCH_PHONE_REGION`): sign-in, the CLI."""
    default_locale: str = "auto"
    """The language of people who have not chosen one (`DISPATCH_DEFAULT_LOCALE`): `auto` reads
    the phone (+86: `zh-CN`, else `en`), or `en` / `zh-CN` for everyone. Given to an account
    when it is made, and to a phone without one (`dispatch.identity.locale`)."""
    egress_allowed_hosts: tuple[str, ...] = ()
    """Hosts (`host` or `host:port`) the service may call on a user's behalf although they are
    not public addresses (`EGRESS_ALLOWED_HOSTS`, comma-separated; the tests' local push
    service). Every other push endpoint on a loopback, private, link-local, multicast or
    reserved address is refused."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses or networks (`TRUSTED_PROXIES`, comma-separated CIDRs) whose
    `X-Forwarded-For` is believed, for rate limits and logs; none by default: the peer address
    is the client."""
    sms_daily_budget: int = 2000
    """SMS the service may send per UTC day, all kinds together (`SMS_DAILY_BUDGET`); operators
    are alerted at 80%, sign-in requests get 429 when it is spent."""
    relay: bool = True
    """Run the outbox relay in this process (`DISPATCH_RELAY=0` turns it off)."""
    relay_lease_s: float = 60.0
    """How long a relay owns the messages it claimed; after a crash, others take them over once
    it lapses (`DISPATCH_RELAY_LEASE_S`)."""
    relay_backoff_s: float = 5.0
    """First retry delay of a failed send; it doubles per attempt up to 10 minutes
    (`DISPATCH_RELAY_BACKOFF_S`)."""
    relay_max_attempts: int = 6
    """Attempts before a message is dead-lettered and operators are alerted
    (`DISPATCH_RELAY_MAX_ATTEMPTS`)."""
    max_body_bytes: int = 256 * 1024
    """Largest request body accepted; bigger → 413."""
    log_level: str = "INFO"
    debug: bool = False
    auto_dispatch: bool = True
    """Send offer waves when a grab job is posted (`DISPATCH_AUTO=0` turns it off, for
    benchmarks that measure posting alone)."""
    clock_offset_s: float = 0.0
    """Shift of the clock bookings and durable timers read (`dispatch.infra.clock`; tests)."""
    payout_limit_cents: int = 2_000_000
    """The local payment provider's limit on one payout (`PAYOUT_LIMIT_CENTS`): a larger one
    fails there, as real providers' per-transfer limits do, and the money goes back."""
    demo: bool = False
    """Seed a demo community with workers at start-up (`dispatch serve --demo`)."""

    @property
    def sms_provider_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from_number)

    @property
    def push_configured(self) -> bool:
        return bool(self.vapid_private_key and self.vapid_subject)

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(_env("DISPATCH_DATA_DIR", "var") or "var")
        return cls(
            data_dir=data_dir,
            storage=StorageSettings(
                database_url=_env("DATABASE_URL"),
                redis_url=_env("REDIS_URL"),
                redis_cluster=_env("REDIS_CLUSTER", "0") in ("1", "true", "yes"),
                local_redis=_env("DISPATCH_LOCAL_REDIS", "single") or "single",
                pool_size=_env_int("DISPATCH_DB_POOL_SIZE", 10),
                pool_timeout_s=float(_env("DISPATCH_DB_POOL_TIMEOUT_S", "10") or "10"),
            ),
            auth=AuthSettings(secret_key=_env("DISPATCH_SECRET_KEY", "") or ""),
            public_base_url=_env("PUBLIC_BASE_URL", "http://127.0.0.1:8000") or "",
            map_style_url=_env("MAP_STYLE_URL"),
            twilio_account_sid=_env("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=_env("TWILIO_AUTH_TOKEN"),
            twilio_from_number=_env("TWILIO_FROM_NUMBER"),
            twilio_api_base=_env("TWILIO_API_BASE"),
            vapid_private_key=_env("VAPID_PRIVATE_KEY"),
            vapid_subject=_env("VAPID_SUBJECT"),
            push_allow_http=_env("PUSH_ALLOW_HTTP", "0") in ("1", "true", "yes"),
            phone_region=(_env("DISPATCH_PHONE_REGION", "CN") or "CN").upper(),
            default_locale=_default_locale(_env("DISPATCH_DEFAULT_LOCALE", "auto") or "auto"),
            egress_allowed_hosts=_env_list("EGRESS_ALLOWED_HOSTS"),
            trusted_proxies=_env_list("TRUSTED_PROXIES"),
            sms_daily_budget=_env_int("SMS_DAILY_BUDGET", 2000),
            relay=_env("DISPATCH_RELAY", "1") not in ("0", "false", "no"),
            relay_lease_s=float(_env("DISPATCH_RELAY_LEASE_S", "60") or 60),
            relay_backoff_s=float(_env("DISPATCH_RELAY_BACKOFF_S", "5") or 5),
            relay_max_attempts=_env_int("DISPATCH_RELAY_MAX_ATTEMPTS", 6),
            log_level=_env("DISPATCH_LOG_LEVEL", "INFO") or "INFO",
            auto_dispatch=_env("DISPATCH_AUTO", "1") not in ("0", "false", "no"),
            clock_offset_s=float(_env("DISPATCH_CLOCK_OFFSET_S", "0") or 0),
            payout_limit_cents=_env_int("PAYOUT_LIMIT_CENTS", 2_000_000),
        )

    def with_secret(self) -> Settings:
        """Return settings whose secret key is set, generating one into the data dir if needed."""
        if self.auth.secret_key:
            return self
        return replace(
            self, auth=replace(self.auth, secret_key=load_or_create_secret(self.data_dir))
        )


def _default_locale(raw: str) -> str:
    allowed = ("auto", "en", "zh-CN")
    if raw not in allowed:
        raise ValueError(f"DISPATCH_DEFAULT_LOCALE must be one of {', '.join(allowed)}: {raw!r}")
    return raw


def load_or_create_secret(data_dir: Path) -> str:
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
