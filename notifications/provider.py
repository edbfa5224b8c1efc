"""The phone provider seam: what the relay and the masked-number webhooks need from a telephony
company. Twilio is the implementation shipped (`notifications.twilio`); another provider (Exotel,
Aliyun privacy numbers…) adds a class here without touching dispatch or the relay."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass


class ProviderError(Exception):
    """A send the provider refused or could not take. `permanent` means retrying cannot help
    (an invalid or unsubscribed number); otherwise the relay retries with backoff."""

    def __init__(self, message: str, *, permanent: bool, code: str | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code


@dataclass(frozen=True)
class SentMessage:
    ref: str
    """The provider's id for the message; receipts name it."""
    status: str


@dataclass(frozen=True)
class InboundCall:
    caller: str
    proxy: str
    ref: str


@dataclass(frozen=True)
class InboundText:
    sender: str
    proxy: str
    text: str
    ref: str


@dataclass(frozen=True)
class Keypress:
    """The answer to an automated call's question: the keys pressed (empty for none)."""

    ref: str
    digits: str


@dataclass(frozen=True)
class Receipt:
    kind: str
    """message or call."""
    ref: str
    status: str
    error_code: str | None = None
    duration_s: int | None = None


class PhoneProvider(ABC):
    name: str
    webhook_media_type: str = "application/xml"

    @property
    @abstractmethod
    def can_send(self) -> bool:
        """True when credentials to send are configured; else messages stay held."""

    @abstractmethod
    async def send_sms(
        self, to: str, body: str, *, from_: str | None, status_callback: str | None
    ) -> SentMessage:
        """Hand one text to the provider. Raises ProviderError."""

    @abstractmethod
    async def place_call(
        self, to: str, say: str, *, gather_url: str, status_callback: str | None,
        locale: str | None = None,
    ) -> SentMessage:  # fmt: skip
        """Call `to`, speak `say` (in `locale`, `dispatch.identity.locale`) and send the key
        pressed to `gather_url` (signed like every webhook). Raises ProviderError."""

    @abstractmethod
    def verify_webhook(
        self, url: str, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> bool:
        """Did the provider sign this webhook (full public URL, form parameters, headers)?"""

    @abstractmethod
    def parse_call(self, params: Mapping[str, str]) -> InboundCall | None: ...

    @abstractmethod
    def parse_text(self, params: Mapping[str, str]) -> InboundText | None: ...

    @abstractmethod
    def parse_keypress(self, params: Mapping[str, str]) -> Keypress | None: ...

    @abstractmethod
    def parse_receipt(self, params: Mapping[str, str]) -> Receipt | None: ...

    @abstractmethod
    def connect_call(self, proxy: str, target: str) -> str:
        """The webhook answer that bridges the caller to `target`, showing `proxy` as caller."""

    @abstractmethod
    def refuse_call(self, message: str, locale: str | None = None) -> str:
        """The webhook answer that speaks `message` (in `locale`) and hangs up."""

    @abstractmethod
    def reply_text(self, message: str | None) -> str:
        """The webhook answer to an inbound text: a reply to the sender, or nothing."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


# Receipt statuses in the order they can happen: a later callback never moves a status back.
MESSAGE_RANK = {
    "accepted": 1, "scheduled": 1, "queued": 2, "sending": 3, "sent": 4,
    "delivered": 5, "undelivered": 5, "failed": 5, "canceled": 5, "read": 6,
}  # fmt: skip
CALL_RANK = {
    "queued": 1, "initiated": 2, "ringing": 3, "in-progress": 4,
    "completed": 5, "busy": 5, "no-answer": 5, "canceled": 5, "failed": 5,
}  # fmt: skip
