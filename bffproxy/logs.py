"""bffproxy's log output: one handler on the ``bffproxy`` logger, one physical line per record.

Log messages quote what clients sent (paths, webhook models and events, keys); a line break in
one would let a client write a forged line into the log. :class:`OneLineFormatter` escapes every
control character of the finished record (message and traceback), repr-style, so no log call, now
or later, can forge a line. Give it to your own handler when you configure logging yourself
(``dictConfig``: ``{"()": "bffproxy.logs.OneLineFormatter", "format": ...}``).
"""

from __future__ import annotations

import logging
import sys

from flask import g, has_request_context

FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s tenant=%(tenant)s rid=%(request_id)s: %(message)s"
# C0, DEL and C1 controls, plus the two Unicode line separators some log viewers break lines at.
_CONTROLS = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
_ESCAPES = {code: repr(chr(code))[1:-1] for code in _CONTROLS}


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


def configure(level: str) -> None:
    """Send the ``bffproxy`` loggers to stderr, once and one line per record, unless already set up.

    Records stay on bffproxy's own handler (``propagate = False``): cachelib calls the module-level
    ``logging.warning()``, whose first call gives the root logger a handler of its own, and a record
    that also propagated there would be written twice.
    """
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
