"""The one HTTP client to Strapi.

A pooled ``requests.Session`` per process, urllib3 retries for idempotent reads only, connect and
read timeouts on every call, header hygiene, and the ONE place where ``requests``' exceptions and
Strapi's 5xx answers become bffproxy errors (502/504). Strapi's 4xx answers are returned as they
are, so views can pass them through with Strapi's status and body.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.retry import Retry

from . import metrics
from .errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable

if TYPE_CHECKING:
    from .admission import Admission

log = logging.getLogger(__name__)

try:
    USER_AGENT = f"bffproxy/{version('bffproxy')}"
except PackageNotFoundError:  # running from a source tree that was not pip-installed
    USER_AGENT = "bffproxy/dev"

# Client request headers that change Strapi's answer and are safe to forward. Not Accept-Language:
# Strapi 5 selects locales with ?locale= only (checked on 5.54: the same bytes for any value), so it
# would only split the cache.
FORWARDED_REQUEST_HEADERS = ("Strapi-Response-Format",)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# urllib3 raises these before a connection exists (NameResolutionError, a DNS failure, is a
# NewConnectionError): a write that failed with one of them never reached Strapi.
NEVER_SENT = (requests.ConnectTimeout, NewConnectionError, ConnectTimeoutError)


class _Ungated:
    """The waiting place of a client without admission: there is always one."""

    def release(self) -> None:
        """Nothing was taken."""


_NO_GATE = _Ungated()


@dataclass(frozen=True)
class StrapiResponse:
    """What Strapi answered: status, raw body and the headers worth keeping."""

    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True for 2xx answers."""
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body decoded as JSON (None when empty)."""
        return json.loads(self.body) if self.body else None


class StrapiClient:
    """A process-local pooled client bound to one Strapi base URL (one per tenant)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_token: str = "",
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        retries: int = 2,
        retry_after_max: int = 2,
        pool_size: int = 32,
        tenant: str = metrics.NO_TENANT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tenant = tenant  # the label of this client's metrics
        self.api_token = api_token
        self.timeout = (connect_timeout, read_timeout)
        self.retries = retries
        self.retry_after_max = retry_after_max
        self.pool_size = pool_size
        self._session: requests.Session | None = None
        # The bulkhead and circuit breaker (admission.py), set once the shared store exists.
        self.admission: Admission | None = None
        self._session_pid = 0
        self._lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        """The pooled session of this process (re-created after a fork: sockets are not shared)."""
        if self._session is None or self._session_pid != os.getpid():
            with self._lock:
                if self._session is None or self._session_pid != os.getpid():
                    self._session = self._new_session()
                    self._session_pid = os.getpid()
        return self._session

    def _new_session(self) -> requests.Session:
        """A session whose adapter retries connect errors always and 502/503/504 on reads only."""
        retry = Retry(
            total=self.retries,
            connect=self.retries,
            # False: never retry a read error (Strapi may have executed the request) and re-raise
            # it as is, so requests reports ReadTimeout (504) rather than a wrapped ConnectionError.
            read=False,
            status=self.retries,
            other=0,
            backoff_factor=0.05,
            status_forcelist=(502, 503, 504),
            allowed_methods=IDEMPOTENT_METHODS,
            respect_retry_after_header=True,
            raise_on_status=False,
            retry_after_max=self.retry_after_max,  # never park a client request for minutes
        )
        adapter = HTTPAdapter(
            max_retries=retry, pool_connections=4, pool_maxsize=self.pool_size, pool_block=False
        )
        session = requests.Session()
        session.trust_env = False  # never route Strapi traffic through an ambient proxy
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        return session

    def authorization(self, bearer: str | None) -> dict[str, str]:
        """The Authorization header for a user token, or none for an anonymous call."""
        return {"Authorization": f"Bearer {bearer}"} if bearer else {}

    def service_authorization(self) -> dict[str, str]:
        """The Authorization header carrying the server's API token (writes, editor reads)."""
        return self.authorization(self.api_token)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | tuple[float, float] | None = None,
        data: Any = None,
    ) -> StrapiResponse:
        """Send one request to Strapi (through admission, when set); translate failures and 5xx.

        ``data`` is a body sent as it is: a file object is streamed from where it stands.
        """

        def send() -> StrapiResponse:
            response = self._exchange(method, path, params, json_body, headers, timeout, data=data)
            return self._receive(method, path, response)

        return send() if self.admission is None else self.admission.call(send)

    def stream(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None
    ) -> requests.Response:
        """Open a request whose body the caller reads in chunks, then closes (files); errors as request()'s.

        Admission covers the call until Strapi's headers arrive, not the reading of the body.
        """

        def send() -> requests.Response:
            response = self._exchange(method, path, None, None, headers, None, stream=True)
            if response.status_code >= 500:
                response.close()
                self._receive(method, path, response)  # raises the 502/504
            return response

        return send() if self.admission is None else self.admission.call(send)

    def waiting_place(self) -> Any:
        """A waiting place for a call to this Strapi (admission.py), or None when none is free."""
        if self.admission is None:
            return _NO_GATE
        return self.admission.waiting_place()

    def _exchange(
        self,
        method: str,
        path: str,
        params: Any,
        json_body: Any,
        headers: Mapping[str, str] | None,
        timeout: float | tuple[float, float] | None,
        *,
        data: Any = None,
        stream: bool = False,
    ) -> requests.Response:
        """One HTTP exchange with Strapi, errors translated at this one boundary."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        started = time.perf_counter()
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=json_body,
                data=data,
                headers=dict(headers or {}),
                timeout=timeout or self.timeout,
                allow_redirects=False,
                stream=stream,
            )
        except requests.RequestException as exc:
            outcome = "timeout" if isinstance(exc, requests.Timeout) else "connect_error"
            metrics.strapi_call(self.tenant, outcome, time.perf_counter() - started)
            raise self._translate(method, exc) from exc
        elapsed = time.perf_counter() - started
        metrics.strapi_call(self.tenant, metrics.outcome_of(response.status_code), elapsed)
        return response

    def _receive(self, method: str, path: str, response: requests.Response) -> StrapiResponse:
        """Keep a 2xx-4xx answer; turn a 5xx into a 502/504 error.

        502 and 503 (a gateway in front of Strapi with nothing behind it, or in maintenance) say
        Strapi is unavailable, and 504 that it timed out: the circuit breaker counts them like a
        refused connection. Any other 5xx is Strapi failing on this request (a query it chokes on),
        which a client can cause at will, so it never opens the circuit for everyone.
        """
        if response.status_code >= 500:
            log.warning("strapi %s %s answered %s", method, path, response.status_code)
            if response.status_code == 504:
                raise UpstreamTimeout("Strapi's own gateway timed out (504).")
            if response.status_code in (502, 503):
                status = response.status_code
                raise UpstreamUnavailable(f"Strapi is unavailable (its gateway answered {status}).")
            raise UpstreamError(f"Strapi failed with status {response.status_code}.")
        kept = {k: v for k, v in response.headers.items() if k.lower() in ("retry-after",)}
        return StrapiResponse(
            status=response.status_code,
            body=response.content,
            content_type=response.headers.get("Content-Type", "application/json; charset=utf-8"),
            headers=kept,
        )

    def _translate(self, method: str, exc: requests.RequestException) -> Exception:
        """The one mapping from requests' exceptions to bffproxy's 502/504 errors."""
        write = method.upper() not in IDEMPOTENT_METHODS
        if isinstance(exc, requests.Timeout):
            error: UpstreamTimeout | UpstreamUnavailable = UpstreamTimeout("Strapi did not answer in time.")
        else:
            error = UpstreamUnavailable("Strapi is unavailable (connection failed).")
        # For a write that may have reached Strapi, the caller must not claim it failed.
        error.outcome_unknown = write and _maybe_sent(exc)
        log.warning("strapi %s unreachable: %s", method, exc.__class__.__name__)
        return error

    def ping(self, timeout: float) -> bool:
        """True when Strapi's health endpoint answers 2xx within ``timeout`` seconds."""
        try:
            response = self.session.get(f"{self.base_url}/_health", timeout=(timeout, timeout))
        except requests.RequestException:
            return False
        return response.status_code < 300


def _maybe_sent(exc: requests.RequestException) -> bool:
    """False only when urllib3 says no connection was made, so the request cannot have reached Strapi."""
    return not any(isinstance(link, NEVER_SENT) for link in _causes(exc))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: requests' first argument, urllib3's ``reason``, cause and context."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        link = todo.pop()
        if not isinstance(link, BaseException) or id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        todo += [getattr(link, "reason", None), link.__cause__, link.__context__, *link.args[:1]]
