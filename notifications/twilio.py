"""Twilio: SMS through the REST client (async, over `make_twilio_client`'s pluggable HTTP client),
webhooks checked with `RequestValidator`, answers built with the TwiML builders."""

from __future__ import annotations

import re
from collections.abc import Mapping

from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import Gather, VoiceResponse

from dispatch.core import texts
from dispatch.identity.phones import PHONE_IN_TEXT
from notifications.provider import (
    InboundCall,
    InboundText,
    Keypress,
    PhoneProvider,
    ProviderError,
    Receipt,
    SentMessage,
)
from notifications.twilio_http import aclose_twilio_client, make_twilio_client

# Error codes after which the same send can never succeed (bad or unreachable number, opted out).
# https://www.twilio.com/docs/api/errors
_PERMANENT = {21211, 21212, 21214, 21217, 21219, 21401, 21407, 21408, 21610, 21612, 21614}
_SECONDS = re.compile(r"[0-9]{1,9}")
"""A call's duration as Twilio writes it: ASCII digits (anything else, or beyond nine digits,
is no duration rather than a 500 from `int` or the database)."""
_VOICES = {"zh-CN": {"language": "zh-CN", "voice": "alice"}}
"""`<Say>` attributes by our locale: Mandarin needs a voice that speaks it (the default `man`
speaks English only); English keeps Twilio's default voice and language."""


def _say(verb: VoiceResponse | Gather, words: str, locale: str | None) -> None:
    verb.say(words, **_VOICES.get(locale or "", {}))


class TwilioProvider(PhoneProvider):
    name = "twilio"

    def __init__(
        self,
        account_sid: str | None,
        auth_token: str | None,
        from_number: str | None,
        api_base: str | None = None,
    ) -> None:
        self._from = from_number
        self._validator = RequestValidator(auth_token) if auth_token else None
        self._client = (
            make_twilio_client(account_sid, auth_token, api_base)
            if account_sid and auth_token and from_number
            else None
        )

    @property
    def can_send(self) -> bool:
        return self._client is not None

    async def send_sms(
        self, to: str, body: str, *, from_: str | None, status_callback: str | None
    ) -> SentMessage:
        kwargs = {"to": to, "from_": from_ or self._from, "body": body}
        if status_callback:
            kwargs["status_callback"] = status_callback
        client = self._sender()
        try:
            message = await client.messages.create_async(**kwargs)
        except Exception as exc:
            raise _provider_error(exc) from exc
        return SentMessage(ref=message.sid or "", status=message.status or "queued")

    async def place_call(
        self, to: str, say: str, *, gather_url: str, status_callback: str | None,
        locale: str | None = None,
    ) -> SentMessage:  # fmt: skip
        response = VoiceResponse()
        gather = response.gather(num_digits=1, action=gather_url, method="POST", timeout=10)
        _say(gather, say, locale)
        _say(response, texts.render("checkin.call_no_key", locale), locale)
        kwargs = {"to": to, "from_": self._from, "twiml": str(response)}
        if status_callback:
            kwargs["status_callback"] = status_callback
        client = self._sender()
        try:
            call = await client.calls.create_async(**kwargs)
        except Exception as exc:
            raise _provider_error(exc) from exc
        return SentMessage(ref=call.sid or "", status=call.status or "queued")

    def _sender(self):  # -> twilio.rest.Client
        if self._client is None:
            raise ProviderError("Twilio is not configured", permanent=True, code="not_configured")
        return self._client

    def verify_webhook(
        self, url: str, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> bool:
        signature = headers.get(SIGNATURE_HEADER.lower()) or headers.get(SIGNATURE_HEADER)
        if self._validator is None or not signature:
            return False
        algorithm = get_signature_algorithm(headers.get(SIGNATURE_SETTINGS_HEADER.lower()))
        return bool(self._validator.validate(url, dict(params), signature, algorithm))

    def parse_call(self, params: Mapping[str, str]) -> InboundCall | None:
        caller, proxy, ref = params.get("From"), params.get("To"), params.get("CallSid")
        if not (caller and proxy and ref):
            return None
        return InboundCall(caller=caller, proxy=proxy, ref=ref)

    def parse_text(self, params: Mapping[str, str]) -> InboundText | None:
        sender, proxy = params.get("From"), params.get("To")
        ref = params.get("MessageSid") or params.get("SmsSid")
        if not (sender and proxy and ref):
            return None
        return InboundText(sender=sender, proxy=proxy, text=params.get("Body", ""), ref=ref)

    def parse_keypress(self, params: Mapping[str, str]) -> Keypress | None:
        ref = params.get("CallSid")
        if not ref:
            return None
        return Keypress(ref=ref, digits=params.get("Digits", ""))

    def parse_receipt(self, params: Mapping[str, str]) -> Receipt | None:
        if params.get("CallSid") and params.get("CallStatus"):
            duration = params.get("CallDuration")
            return Receipt(
                kind="call",
                ref=params["CallSid"],
                status=params["CallStatus"].lower(),
                duration_s=int(duration) if duration and _SECONDS.fullmatch(duration) else None,
            )
        ref = params.get("MessageSid") or params.get("SmsSid")
        status = params.get("MessageStatus") or params.get("SmsStatus")
        if ref and status:
            return Receipt(
                kind="message",
                ref=ref,
                status=status.lower(),
                error_code=params.get("ErrorCode") or None,
            )
        return None

    def connect_call(self, proxy: str, target: str) -> str:
        response = VoiceResponse()
        dial = response.dial(caller_id=proxy, timeout=30, answer_on_bridge=True)
        dial.number(target)
        return str(response)

    def refuse_call(self, message: str, locale: str | None = None) -> str:
        response = VoiceResponse()
        _say(response, message, locale)
        response.hangup()
        return str(response)

    def reply_text(self, message: str | None) -> str:
        response = MessagingResponse()
        if message:
            response.message(message)
        return str(response)

    async def aclose(self) -> None:
        if self._client is not None:
            await aclose_twilio_client(self._client)


def _provider_error(exc: Exception) -> ProviderError:
    """What a failed REST call means for the relay: permanent (a bad or opted-out number, a
    refused request) or worth another try (rate limits, a network failure). Numbers in the
    provider's message are hidden."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, TwilioRestException):
        permanent = exc.code in _PERMANENT or exc.status in (400, 401, 403, 404)
        if exc.status == 429:
            permanent = False
        return ProviderError(
            PHONE_IN_TEXT.sub("[number]", f"twilio {exc.status} {exc.code}: {exc.msg}")[:300],
            permanent=permanent,
            code=str(exc.code or exc.status),
        )
    detail = PHONE_IN_TEXT.sub("[number]", repr(exc))  # connection refused, timeouts
    return ProviderError(f"twilio unreachable: {detail}"[:300], permanent=False)
