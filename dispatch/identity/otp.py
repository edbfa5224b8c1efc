"""Phone sign-in by one-time code: codes are random, stored hashed, expire, are used once, and
burn after too many wrong guesses. Requests are limited per phone and per client."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.core import texts
from dispatch.core.errors import Forbidden, Unauthorized
from dispatch.identity.auth import issue_token
from dispatch.identity.locale import AUTO, locale_for_phone
from dispatch.identity.phones import DEFAULT_REGION, PhoneVault, normalize_phone
from dispatch.identity.principals import refuse_pool_number, upsert_phone_user
from dispatch.infra import outbox, ratelimit
from dispatch.infra.settings import AuthSettings
from dispatch.infra.smsbudget import SmsBudget
from dispatch.models import OtpCode, User

CODE_DIGITS = 6


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_hash(vault_key: bytes, phone_hash: bytes, code: str) -> bytes:
    return hmac.new(vault_key, phone_hash + b":" + code.encode(), hashlib.sha256).digest()


class OtpService:
    def __init__(
        self,
        vault: PhoneVault,
        redis: Redis,
        settings: AuthSettings,
        sms_status: str = "held",
        budget: SmsBudget | None = None,
        region: str = DEFAULT_REGION,
        *,
        sessions: async_sessionmaker[AsyncSession],
        default_locale: str = AUTO,
    ) -> None:
        self.sessions = sessions
        self.default_locale = default_locale
        """`DISPATCH_DEFAULT_LOCALE`: the language of a phone without an account, and of a new
        account (`dispatch.identity.locale.locale_for_phone`)."""
        self.vault = vault
        self.region = region
        """Country a number typed without its country code is read in."""
        self.sms_status = sms_status
        self.budget = budget
        """Status new SMS rows start in: `held` without a provider, `pending` with one."""
        self.redis = redis
        self.settings = settings
        self._code_key = hashlib.sha256(b"otp:" + settings.secret_key.encode()).digest()

    async def send_code(self, raw_phone: str, client: str) -> int:
        """Issue a sign-in code and queue its text, in one transaction; the code's lifetime."""
        async with self.sessions.begin() as session:
            await self.request(session, raw_phone, client)
        return self.settings.otp_ttl_s

    async def token_for(self, raw_phone: str, code: str, role: str) -> tuple[int, str]:
        """Trade a phone's code for (user id, bearer token). A wrong guess is committed before
        the 401 is raised, so guesses count even though the call fails."""
        communities: list[int] = []
        async with self.sessions() as session:
            if role == "operator":
                # Signing in never makes an operator: an admin grants the role first.
                phone = normalize_phone(raw_phone, self.region)
                phone_hash = await self.verify(session, phone, code)
                await session.commit()  # the code is spent either way
                user = await session.scalar(select(User).where(User.phone_hash == phone_hash))
                if user is None or "operator" not in user.roles:
                    raise Forbidden(
                        "this phone has not been made an operator", code="not_an_operator"
                    )
                user_id, communities = user.id, list(user.operator_community_ids)
            else:
                user_id = await self.sign_in(session, raw_phone, code, role)
                await session.commit()
        s = self.settings
        token = issue_token(s.secret_key, user_id, role, communities, ttl_s=s.token_ttl_s)
        return user_id, token

    async def request(self, session: AsyncSession, raw_phone: str, client: str) -> None:
        """Issue a code for the phone and queue its SMS in the outbox (same transaction). The
        number is normalized first: its canonical form keys the limits, the code and the user."""
        s = self.settings
        phone = normalize_phone(raw_phone, self.region)
        await refuse_pool_number(session, phone)
        phone_hash = self.vault.hash(phone)
        subject = phone_hash.hex()
        await ratelimit.hit(
            self.redis,
            ratelimit.Limit("otp-client", s.otp_per_client_limit, s.otp_per_client_window_s),
            client,
            detail="too many sign-in codes requested from this client",
        )
        await ratelimit.hit(
            self.redis,
            ratelimit.Limit("otp-gap", 1, s.otp_min_interval_s),
            subject,
            detail="a code was sent moments ago; wait before asking again",
        )
        await ratelimit.hit(
            self.redis,
            ratelimit.Limit("otp-phone", s.otp_per_phone_limit, s.otp_per_phone_window_s),
            subject,
            detail="too many sign-in codes requested for this phone",
        )
        if self.budget is not None and self.sms_status != "held":
            await self.budget.check()
        now = datetime.now(UTC)
        code = new_code()
        # A new code replaces any earlier one still live for this phone.
        await session.execute(
            update(OtpCode)
            .where(OtpCode.phone_hash == phone_hash, OtpCode.consumed_at.is_(None))
            .values(consumed_at=now)
        )
        session.add(
            OtpCode(
                phone_hash=phone_hash,
                code_hash=code_hash(self._code_key, phone_hash, code),
                expires_at=now + timedelta(seconds=s.otp_ttl_s),
                attempts=0,
                created_at=now,
            )
        )
        user_id = await session.scalar(select(User.id).where(User.phone_hash == phone_hash))
        await outbox.enqueue(
            session,
            outbox.Outgoing(
                channel="sms",
                kind="otp",
                to_user_id=user_id,
                phone=outbox.Recipient.of(self.vault, phone, phone_hash),
                body=texts.every("otp.code", code=code, minutes=s.otp_ttl_s // 60),
                status=self.sms_status,
                locale=locale_for_phone(phone, self.default_locale),
            ),
            now,
        )

    async def sign_in(self, session: AsyncSession, raw_phone: str, code: str, role: str) -> int:
        """Spend the phone's code and return its user (created on first sign-in) with `role`
        added. The caller commits."""
        phone = normalize_phone(raw_phone, self.region)
        phone_hash = await self.verify(session, phone, code)
        return await upsert_phone_user(
            session, self.vault, phone, phone_hash, role,
            default_locale=locale_for_phone(phone, self.default_locale),
        )  # fmt: skip

    async def verify(self, session: AsyncSession, phone: str, code: str) -> bytes:
        """Spend the phone's live code if `code` matches and return the phone hash; else 401.

        A failed attempt is committed before the error is raised, so wrong guesses count even
        though the request fails.
        """
        phone_hash = self.vault.hash(phone)
        now = datetime.now(UTC)
        row = await session.scalar(
            select(OtpCode)
            .where(OtpCode.phone_hash == phone_hash, OtpCode.consumed_at.is_(None))
            .order_by(OtpCode.created_at.desc())
            .limit(1)
            .with_for_update()
        )
        if row is None:
            raise Unauthorized(
                "no live code for this phone; request a new one", code="invalid_code"
            )
        failure: str | None = None
        if row.expires_at <= now:
            row.consumed_at = now
            failure = "the code has expired; request a new one"
        elif not hmac.compare_digest(code_hash(self._code_key, phone_hash, code), row.code_hash):
            row.attempts += 1
            failure = "wrong code"
            if row.attempts >= self.settings.otp_max_attempts:
                row.consumed_at = now
                failure = "too many wrong codes; request a new one"
        if failure is not None:
            await session.commit()
            raise Unauthorized(failure, code="invalid_code")
        row.consumed_at = now
        return phone_hash
