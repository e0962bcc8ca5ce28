"""bffproxy's log output: one handler on the ``bffproxy`` logger, one physical line per record.

Log messages quote what clients sent (paths, webhook models and events, keys); a line break in
one would let a client write a forged line into the log. :class:`OneLineFormatter` escapes every
control character of the finished record (message and traceback), repr-style, so no log call, now
or later, can forge a line. Give it to your own handler when you configure logging yourself
(``dictConfig``: ``{"()": "bffproxy.logs.OneLineFormatter", "format": ...}``).

The access log is gunicorn's, written by :class:`AccessLogger` (``logger_class`` in
``gunicorn.conf.py``): one JSON object per line (``BFFPROXY_ACCESS_LOG_FORMAT=json``, the default)
or gunicorn's ``access_log_format`` (``text``). gunicorn writes it once the answer is sent, whoever
gave it (the fast path, CORS, tenant routing or a view), so bytes and duration are the real ones;
what only the app knows (tenant, route, cache result, time spent on Strapi) it reads from the WSGI
environ, where the app left it (metrics.py's keys). It never writes the query string (it may carry
a ticket or a token), a request header or a cookie; JSON escapes every control character.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import g, has_request_context
from gunicorn import glogging

from . import metrics
from .tenant_routing import ENVIRON_KEY

FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s tenant=%(tenant)s rid=%(request_id)s: %(message)s"
# C0, DEL and C1 controls, plus the two Unicode line separators some log viewers break lines at.
_CONTROLS = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
_ESCAPES = {code: repr(chr(code))[1:-1] for code in _CONTROLS}
ACCESS_LOG_FORMATS = ("json", "text")
# A query in a request target gunicorn quotes: from the "?" to the end of the target.
_QUERY = re.compile(r"\?[^\s'\"]*")
# This process's choice, set by create_app (settings are validated there); gunicorn's logger reads it.
access_log: dict[str, str] = {"format": "json"}


def escape_controls(text: str) -> str:
    """``text`` with every control character written as its escape (``\\n``, ``\\x1b``, ``\\u2028``)."""
    return text if text.isprintable() else text.translate(_ESCAPES)


class OneLineFormatter(logging.Formatter):
    """A formatter whose every record is one line: control characters are escaped after formatting."""

    def format(self, record: logging.LogRecord) -> str:
        """The record formatted as usual, then escaped (a traceback's line breaks become ``\\n``).

        A record logged while a request is served names its tenant and request id (``-`` outside
        one, e.g. a background refresh, whose key names the tenant anyway): every line of a
        multi-tenant instance says whose it is, and joins nginx's and gunicorn's lines by id.
        """
        if not hasattr(record, "tenant"):
            record.tenant, record.request_id = request_context()
        return escape_controls(super().format(record))


def request_context() -> tuple[str, str]:
    """(tenant name, request id) of the request being served, ``-`` for each one unknown."""
    if not has_request_context():
        return "-", "-"
    tenant = g.get("tenant")
    return (tenant.name if tenant is not None else "-", str(g.get("request_id") or "-"))


def configure(level: str, access_format: str = "json") -> None:
    """Send the ``bffproxy`` loggers to stderr, once and one line per record, unless already set up.

    ``access_format`` is the access log's (``json`` or ``text``), written by :class:`AccessLogger`.

    Records stay on bffproxy's own handler (``propagate = False``): cachelib calls the module-level
    ``logging.warning()``, whose first call gives the root logger a handler of its own, and a record
    that also propagated there would be written twice.
    """
    access_log["format"] = access_format
    logger = logging.getLogger("bffproxy")
    logger.setLevel(level)
    if any(isinstance(h.formatter, OneLineFormatter) for h in logger.handlers):
        return  # an app built earlier in this process set it up
    if logger.handlers or logging.getLogger().handlers:
        return  # the operator (or gunicorn's --log-config, or pytest) configured logging
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(FORMAT))
    logger.addHandler(handler)
    logger.propagate = False


class QueryRedactor(logging.Filter):
    """Removes the query of every request target a gunicorn record quotes (it may carry a ticket)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record, its message without queries (``Invalid HTTP request line: 'GET /x?…'``)."""
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit: the handler reports it, as without this filter
            return True
        if "?" in message:
            record.msg, record.args = _QUERY.sub("?[query removed]", message), ()
        return True


_REDACTOR = QueryRedactor()


class AccessLogger(glogging.Logger):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's logger with bffproxy's access log: JSON lines, or gunicorn's text without the query.

    Its error log drops queries too: gunicorn's warning about a request it refuses quotes the
    request line whole, and its "Error handling request" names the target with its query.
    """

    def setup(self, cfg: Any) -> None:
        """gunicorn's set-up (at start and on HUP), then the error log's query filter (added once)."""
        super().setup(cfg)
        self.error_log.addFilter(_REDACTOR)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        """Write one access line for an answer gunicorn has sent."""
        if not self.access_log_enabled:
            return
        if access_log["format"] != "json":
            super().access(resp, req, environ, request_time)
            return
        try:
            self.access_log.info(access_line(resp, environ, request_time))
        except Exception:
            self.error(traceback.format_exc())

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> dict[str, Any]:
        """gunicorn's atoms, the request line (``%(r)s``) without its query string, controls escaped.

        gunicorn refuses C0 controls in a request, not C1 ones (``\x85`` breaks lines in some
        viewers); and behind ``BFFPROXY_TRUSTED_PROXIES`` the address (``%(h)s``) is a header's text.
        """
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        method, protocol = environ.get("REQUEST_METHOD"), environ.get("SERVER_PROTOCOL")
        atoms["r"] = f"{method} {target_path(environ)} {protocol}"
        return {name: escape_controls(v) if isinstance(v, str) else v for name, v in atoms.items()}


def target_path(environ: dict[str, Any]) -> str:
    """The path the client asked for, as sent (percent-encoded), without the query string, nor
    the scheme and authority of an absolute target (``http://user:password@host/path``)."""
    raw = environ.get("RAW_URI") or environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    return _AUTHORITY.sub("", str(raw), count=1).split("?", 1)[0] or "/"


_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")  # RFC 3986 scheme, then the authority


def access_line(resp: Any, environ: dict[str, Any], request_time: timedelta) -> str:
    """One JSON object on one line (every non-ASCII and control character escaped)."""
    tenant = environ.get(ENVIRON_KEY)
    upstream = environ.get(metrics.UPSTREAM)
    request_id = next((v for k, v in resp.headers if k.lower() == "x-request-id"), None)
    record = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "log": "access",
        "request_id": request_id,
        "tenant": tenant.name if tenant is not None else None,
        "client": environ.get("REMOTE_ADDR"),
        "method": environ.get("REQUEST_METHOD"),
        "path": target_path(environ),
        "route": environ.get(metrics.ROUTE),
        "status": resp.status_code,
        "bytes": resp.sent,
        "duration_ms": round(request_time.total_seconds() * 1000, 3),
        "cache": environ.get(metrics.CACHE),
        "upstream_ms": round(upstream * 1000, 3) if upstream is not None else None,
    }
    return json.dumps(record, ensure_ascii=True, separators=(",", ":"))
