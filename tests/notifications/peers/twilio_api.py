"""A local server speaking the Twilio REST API (2010-04-01) for Messages and Calls.

The real `twilio` client talks to it through `make_twilio_client(..., api_base=peer.base_url)`.
It checks HTTP Basic auth and the fields Twilio checks, answers with the JSON Twilio answers
(resources and `{"code", "message", "more_info", "status"}` errors, which the client turns into
`TwilioRestException`), and records what it saw.

    async with TwilioApiPeer(ACCOUNT_SID, AUTH_TOKEN) as peer:
        client = make_twilio_client(ACCOUNT_SID, AUTH_TOKEN, api_base=peer.base_url)
        msg = await client.messages.create_async(to="+15550001111", from_="+15550002222", body="hi")
        assert peer.messages[0]["sid"] == msg.sid

Records: `requests` (every request: method, path, form, status answered), `messages` and `calls`
(accepted ones only: what Twilio would go on to deliver). Faults: `fail_next(n, status)`,
`reject_to(number, code, status)`, `delay_s` (the answer is held back after the message has been
accepted, so a sender killed meanwhile leaves a message it never learnt the sid of).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import BasicAuth, web
from twilio.request_validator import RequestValidator

from tests.notifications.peers import LocalHttpServer

API_VERSION = "2010-04-01"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-f]{32}$")
MAX_BODY_CHARS = 1600

ERROR_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service is unavailable. Please try again",
    21201: "No 'To' number is specified",
    21205: "Url parameter is required.",
    21211: "Invalid 'To' Phone Number",
    21212: "Invalid 'From' Phone Number",
    21213: "No 'From' number is specified",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21701: "The Messaging Service Sid is invalid",
}


class TwilioError(Exception):
    """An error answer, in Twilio's JSON shape."""

    def __init__(self, status: int, code: int, message: str | None = None) -> None:
        super().__init__(message or ERROR_MESSAGES.get(code, "Error"))
        self.status, self.code = status, code

    def response(self) -> web.Response:
        return web.json_response(
            {
                "code": self.code,
                "message": str(self),
                "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
                "status": self.status,
            },
            status=self.status,
        )


@dataclass
class _Rejection:
    code: int
    status: int


def _rfc2822(when: datetime) -> str:
    return format_datetime(when.replace(microsecond=0))


def _segments(body: str) -> int:
    """SMS segments: GSM-7 (approximated as ASCII) 160/153 characters, else UCS-2 70/67."""
    single, multi = (160, 153) if body.isascii() else (70, 67)
    return 1 if len(body) <= single else -(-len(body) // multi)


class TwilioApiPeer(LocalHttpServer):
    """Twilio's Messages and Calls endpoints for one account (`account_sid`, `auth_token`)."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.delay_s = 0.0
        self._resources: dict[str, dict[str, Any]] = {}
        self._failures: list[tuple[int, int]] = []
        self._rejected: dict[str, _Rejection] = {}

    # -- test controls --------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, code: int | None = None) -> None:
        """The next `n` authenticated requests get a Twilio-style error with `status`."""
        code = code or {429: 20429, 503: 20503}.get(status, 20500)
        self._failures.extend([(status, code)] * n)

    def reject_to(self, number: str, code: int = 21610, status: int = 400) -> None:
        """Messages and calls to `number` are refused (21610: the recipient replied STOP)."""
        self._rejected[number] = _Rejection(code, status)

    def set_status(self, sid: str, status: str, error_code: int | None = None) -> dict[str, Any]:
        """Move a message or call to `status` (as `GET .../{sid}.json` will show it)."""
        resource = self._resources[sid]
        resource["status"] = status
        resource["error_code"] = error_code
        resource["date_updated"] = _rfc2822(datetime.now(UTC))
        return resource

    def message_status_params(
        self, sid: str, status: str, error_code: int | None = None
    ) -> dict[str, str]:
        """The form Twilio posts to a message's StatusCallback when it reaches `status`."""
        m = self.set_status(sid, status, error_code)
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "From": m["from"] or "",
            "MessageSid": sid,
            "MessageStatus": status,
            "SmsSid": sid,
            "SmsStatus": status,
            "To": m["to"],
        }
        if m["messaging_service_sid"]:
            params["MessagingServiceSid"] = m["messaging_service_sid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return params

    def signed_status_callback(
        self, url: str, params: dict[str, str]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """(headers, form) for a webhook POST to `url` signed as Twilio signs it."""
        form = {k: str(v) for k, v in params.items()}
        signature = RequestValidator(self.auth_token).compute_signature(url, form)
        headers = {
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
        }
        return headers, form

    # -- the API --------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        account = f"/{API_VERSION}/Accounts/{{account_sid}}"
        return [
            web.post(f"{account}/Messages.json", self._create_message),
            web.get(f"{account}/Messages/{{sid:SM[0-9a-f]{{32}}}}.json", self._fetch),
            web.post(f"{account}/Calls.json", self._create_call),
            web.get(f"{account}/Calls/{{sid:CA[0-9a-f]{{32}}}}.json", self._fetch),
            web.route("*", "/{tail:.*}", self._not_found),
        ]

    async def _create_message(self, request: web.Request) -> web.Response:
        return await self._handle(request, self._accept_message)

    async def _create_call(self, request: web.Request) -> web.Response:
        return await self._handle(request, self._accept_call)

    async def _fetch(self, request: web.Request) -> web.Response:
        async def fetch(form: dict[str, str]) -> web.Response:
            resource = self._resources.get(request.match_info["sid"])
            if resource is None:
                raise TwilioError(404, 20404)
            return web.json_response(resource)

        return await self._handle(request, fetch)

    async def _not_found(self, request: web.Request) -> web.Response:
        async def missing(form: dict[str, str]) -> web.Response:
            raise TwilioError(404, 20404)

        return await self._handle(request, missing)

    async def _handle(self, request: web.Request, action) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        seen: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "form": form,
            "status": None,
        }
        self.requests.append(seen)
        self._notify()
        try:
            self._authenticate(request)
            if self._failures:
                status, code = self._failures.pop(0)
                raise TwilioError(status, code)
            response = await action(form)
        except TwilioError as e:
            response = e.response()
        seen["status"] = response.status
        self._notify()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return response

    def _authenticate(self, request: web.Request) -> None:
        try:
            auth = BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            auth = None
        if auth is None or (auth.login, auth.password) != (self.account_sid, self.auth_token):
            raise TwilioError(401, 20003)
        if request.match_info.get("account_sid", self.account_sid) != self.account_sid:
            raise TwilioError(404, 20404)

    def _check_recipient(self, to: str, missing: int) -> None:
        if not to:
            raise TwilioError(400, missing)
        if not E164.match(to):
            raise TwilioError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if rejection := self._rejected.get(to):
            raise TwilioError(rejection.status, rejection.code)

    def _new_resource(self, prefix: str, kind: str, form: dict[str, str]) -> dict[str, Any]:
        sid = prefix + secrets.token_hex(16)
        now = _rfc2822(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/{kind}/{sid}"
        return {
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "date_created": now,
            "date_updated": now,
            "direction": "outbound-api",
            "from": form.get("From") or None,
            "price": None,
            "price_unit": "USD",
            "status": "queued",
            "to": form["To"],
            "uri": uri + ".json",
        }

    async def _accept_message(self, form: dict[str, str]) -> web.Response:
        to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        service = form.get("MessagingServiceSid", "")
        self._check_recipient(to, missing=21604)
        if service and not MESSAGING_SERVICE_SID.match(service):
            raise TwilioError(400, 21701)
        if not from_ and not service:
            raise TwilioError(400, 21603)
        if from_ and not E164.match(from_):
            raise TwilioError(400, 21212, f"The 'From' number {from_} is not a valid phone number")
        if not body.strip() and not form.get("MediaUrl") and not form.get("ContentSid"):
            raise TwilioError(400, 21602)
        if len(body) > MAX_BODY_CHARS:
            raise TwilioError(400, 21617)
        resource = self._new_resource("SM", "Messages", form)
        sid = resource["sid"]
        resource |= {
            "body": body,
            "status": "queued" if from_ else "accepted",
            "num_segments": str(_segments(body)),
            "num_media": "0",
            "messaging_service_sid": service or None,
            "date_sent": None,
            "error_code": None,
            "error_message": None,
            "subresource_uris": {
                "media": resource["uri"].removesuffix(".json") + "/Media.json",
                "feedback": resource["uri"].removesuffix(".json") + "/Feedback.json",
            },
        }
        self._resources[sid] = resource
        self.messages.append(
            {
                "sid": sid,
                "to": to,
                "from_": from_ or None,
                "body": body,
                "status_callback": form.get("StatusCallback"),
                "messaging_service_sid": service or None,
                "form": form,
            }
        )
        return web.json_response(resource, status=201)

    async def _accept_call(self, form: dict[str, str]) -> web.Response:
        to, from_ = form.get("To", ""), form.get("From", "")
        url, twiml = form.get("Url"), form.get("Twiml")
        self._check_recipient(to, missing=21201)
        if not from_:
            raise TwilioError(400, 21213)
        if not E164.match(from_):
            raise TwilioError(400, 21212, f"The 'From' number {from_} is not a valid phone number")
        if not url and not twiml and not form.get("ApplicationSid"):
            raise TwilioError(400, 21205)
        resource = self._new_resource("CA", "Calls", form)
        sid = resource["sid"]
        resource |= {
            "to_formatted": to,
            "from_formatted": from_,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "start_time": None,
            "end_time": None,
            "duration": None,
            "answered_by": None,
            "forwarded_from": None,
            "caller_name": None,
            "group_sid": None,
            "queue_time": "0",
            "trunk_sid": None,
            "annotation": None,
            "subresource_uris": {
                "notifications": resource["uri"].removesuffix(".json") + "/Notifications.json",
                "recordings": resource["uri"].removesuffix(".json") + "/Recordings.json",
            },
        }
        self._resources[sid] = resource
        self.calls.append(
            {
                "sid": sid,
                "to": to,
                "from_": from_,
                "url": url,
                "twiml": twiml,
                "status_callback": form.get("StatusCallback"),
                "form": form,
            }
        )
        return web.json_response(resource, status=201)
