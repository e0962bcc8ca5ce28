"""Media blueprint: Strapi's media library and its files through bffproxy, so it can be the single origin.

Everything here was checked on Strapi 5.54 (upload plugin, local provider):

* ``GET /api/upload/files``, ``/api/upload/files/page`` and ``/api/upload/files/<id>`` are read like
  content: anonymous reads from the shared cache under the name :data:`MEDIA` (keys carry the
  tenant), signed-in reads forwarded with the caller's token and never cached. Strapi's ``find``
  honours ``filters``, ``sort`` and ``fields`` and ignores ``pagination`` (``/files/page`` pages);
  ``findOne`` declares ``fields`` but ignores it. ``populate`` is refused: the only relation a file
  can populate is ``related``, and Strapi fills it with the draft rows of the entries using the
  file, for its Public role too. Filters and sorts may not walk a relation (``related``, ``folder``).
  Every query is read with bffproxy's qs parser (query.py); any other parameter is a 400.
* ``GET|HEAD /uploads/<name>`` streams the file, chunk by chunk, never held in memory. Strapi's
  koa-static sends ``Last-Modified`` and ``Content-Length`` but no ``ETag`` and never a 304, and
  its koa-range answers ``bytes=-500`` with 416 and a range past the end with a 206 whose
  ``Content-Length`` exceeds its body. So bffproxy answers conditional requests itself (an ETag
  made of the size and modification time, as nginx makes it), asks Strapi's ``HEAD`` for a
  request that needs them, and sends Strapi only one range it has checked against the file's size
  (RFC 9110: 416 for a range past the end, 200 for several ranges or an ``If-Range`` that no longer
  matches). Files are not cached here: nginx caches them (deploy/nginx), revalidating with these
  validators. A file name is one path segment of ``A-Z a-z 0-9 _ - .`` (no leading dot, no ``..``);
  anything else is a 404 that never reaches Strapi. Every file carries ``nosniff`` and a sandboxing
  Content-Security-Policy: anyone allowed to upload must not be able to serve a page of this origin.
* ``POST /api/upload[?id=<file id>]`` (upload; with ``id``, replace or describe a file) and
  ``DELETE /api/upload/files/<id>`` need the ``write`` permission of the media policy
  (``BFFPROXY_MEDIA_POLICY``, ``upload``) and are sent with the server's API token through the write
  pipeline of publishing.py (idempotency, audit, never retried). An upload is read as it arrives,
  up to ``BFFPROXY_MAX_UPLOAD_BYTES`` (413 past it, never a cut body), and re-encoded part by part
  into a spool file on disk: only ``files`` and ``fileInfo`` parts (Strapi would also take ``ref``,
  ``refId`` and ``field``, which attach the file to any entry: a content write no policy checked),
  canonical headers and a fresh boundary, so Strapi parses exactly what was checked. Then it is
  streamed to Strapi with its length.
* Strapi's ``media.create|update|delete`` webhooks, and bffproxy's own media writes, drop the cached
  media lists and the collections named in ``BFFPROXY_MEDIA_EMBEDDED_IN``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import IO, Any

import requests
from flask import Blueprint, Flask, Response, request
from urllib3.fields import format_multipart_header_param
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import (
    http_date,
    is_resource_modified,
    parse_date,
    parse_if_range_header,
    parse_options_header,
    parse_range_header,
)
from werkzeug.sansio.multipart import NEED_DATA, Data, Epilogue, Field, File, MultipartDecoder
from werkzeug.wsgi import get_content_length

from . import audit
from .auth import check_policy
from .bodies import too_large
from .caching import Entry, Freshness, Served, StoreUnavailable, content_cache
from .content import RESPONSE_FORMAT_HEADER, entry_headers, forwarded_headers, not_modified
from .errors import ApiError, BadRequest, Conflict, NotFound, UnsupportedMediaType, UpstreamError
from .idempotency import Claim
from .invalidation import CacheUnavailable
from .publishing import perform
from .query import (
    InvalidParameter,
    Param,
    canonical,
    encode,
    parse_query,
    refuse_failing_filters,
    refuse_unlisted,
)
from .reads import NO_QUERY, WriteQuery
from .relation_paths import ModelledCollection, PathWalker, draft_path
from .settings import ConfigError, as_names, as_number, as_str, env_name
from .strapi import StrapiClient, StrapiResponse
from .tenants import current_tenant, tenant_config

log = logging.getLogger(__name__)

bp = Blueprint("media", __name__)

#: The cache's name for the media lists: a '/' keeps it apart from every collection's name.
MEDIA = "upload/files"
#: What Strapi 5.54's routes declare, less ``populate`` (see the module docstring).
LIST_PARAMS = frozenset({"filters", "sort", "fields", "pagination"})
ONE_PARAMS = frozenset({"fields"})
NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
# A file's typed fields, and the operators that compare them as their type (Strapi's upload plugin
# fails with a 500 on another value there; $contains, $null... take any text, as in Strapi).
NUMBER_FIELDS = frozenset({"size", "width", "height"})
DATE_FIELDS = frozenset({"createdAt", "updatedAt", "publishedAt"})
COMPARISONS = frozenset({"$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$in", "$notIn", "$between"})
UPLOAD_PARTS = frozenset({"files", "fileInfo"})
MAX_FILE_INFO = 64 * 1024  # bytes of one fileInfo field (a name, alternative text and a caption)
EVENTS = frozenset({"media.create", "media.update", "media.delete"})
AUDITED = {"media.upload": "upload", "media.delete_file": "delete"}

FILE_ID = re.compile(r"[1-9][0-9]{0,17}")  # Strapi's fileId: a positive integer
FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}")  # one segment, no leading dot
# RFC 2046's characters; longer than its 70 (werkzeug's test client makes 78): bffproxy re-encodes.
BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,./:=? -]{0,199}[0-9A-Za-z'()+_,./:=?-]")
PART_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,127}/[A-Za-z0-9!#$&^_.+-]{1,127}")
CHUNK = 64 * 1024
DECODER_BUFFER = 4 * CHUNK  # the most a part's headers (or a preamble) may hold in memory
MAX_PARTS = 100
DEFAULT_MAX_UPLOAD = 50 * 1024 * 1024
DEFAULT_UPLOAD_TIMEOUT = 60.0
FILE_SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; img-src 'self' data:; media-src 'self'; sandbox"),
)
_WALKER = PathWalker(
    {MEDIA: ModelledCollection(draft_and_publish=False)}
)  # a file's relations: none walkable


class UploadOutcomeUnknown(Conflict):
    code = "outcome_unknown"
    message = (
        "An earlier upload with this Idempotency-Key may or may not have been stored (Strapi did not "
        "answer). Nothing was uploaded again: look for the file in /api/upload/files, and send a new "
        "key to upload it again."
    )


@dataclass(frozen=True)
class MediaConfig:
    """The validated media settings."""

    policy: str
    freshness: Freshness
    cache_control: str
    max_upload: int
    upload_timeout: float
    embedded_in: tuple[str, ...]
    spool_dir: str


def media_config() -> MediaConfig:
    """The media settings of the request's tenant."""
    config: MediaConfig = tenant_config()["MEDIA"]
    return config


# -- the media library: reads ------------------------------------------------------------------


@dataclass(frozen=True)
class MediaRead:
    """A checked read of the media library: Strapi's path and the re-encoded query."""

    strapi_path: str
    params: tuple[Param, ...]

    @cached_property
    def query_string(self) -> str:
        """The canonical query sent to Strapi."""
        return encode(self.params)

    def signature(self, response_format: str | None) -> str:
        """Everything that makes one answer differ from another."""
        return f"{self.strapi_path}?{self.query_string}#format={response_format or ''}"


@bp.get("/api/upload/files")
def list_files() -> Response:
    """Every file that matches (Strapi's find: filters, sort, fields; not paged)."""
    return serve_media(media_read("api/upload/files", LIST_PARAMS))


@bp.get("/api/upload/files/page")
def page_of_files() -> Response:
    """One page of files, with Strapi's pagination meta."""
    return serve_media(media_read("api/upload/files/page", LIST_PARAMS))


@bp.get("/api/upload/files/<file_id>")
def get_file(file_id: str) -> Response:
    """One file's description by its numeric id."""
    return serve_media(media_read(f"api/upload/files/{checked_file_id(file_id)}", ONE_PARAMS))


def checked_file_id(file_id: str) -> str:
    """The id when it has Strapi's shape (a positive integer), else 404 without asking Strapi."""
    if not FILE_ID.fullmatch(file_id):
        raise NotFound(f"There is no file with id '{file_id}'.")
    return file_id


def media_read(strapi_path: str, allowed: frozenset[str]) -> MediaRead:
    """This request's query read as qs reads it: 400 for a name not ``allowed`` or a relation walk."""
    params = canonical(parse_query(request.environ.get("QUERY_STRING", "")))
    populate = next((p for p in params if p.name == "populate"), None)
    if populate is not None:
        raise InvalidParameter(
            "populate is not accepted on the media library: Strapi fills a file's 'related' entries "
            "with their drafts, for anyone.",
            details={"param": populate.key},
        )
    refuse_unlisted(params, allowed)
    refuse_failing_filters(params)
    refuse_mistyped(params)
    walk = draft_path(_WALKER, MEDIA, params)
    if walk is not None:
        raise InvalidParameter(
            f"Query parameter {walk!r} walks a relation of a file: only the file's own fields may be "
            "filtered or sorted on.",
            details={"param": walk},
        )
    return MediaRead(strapi_path, params)


def refuse_mistyped(params: tuple[Param, ...]) -> None:
    """400 for a file's number or date compared with something else: Strapi's upload plugin fails (500)
    on ``filters[size][$gt]=abc``, ``filters[width][$lt]=`` or ``filters[createdAt]=`` (fuzz-found on
    5.54; content types answer those with a 400 of their own)."""
    for param in params:
        path = (
            [s for s in param.segments[1:] if not (s.isdigit() or s == "")] if param.name == "filters" else []
        )
        fields = [s for s in path if not s.startswith("$")]
        operators = [s for s in path if s.startswith("$") and s not in ("$and", "$or", "$not")]
        if not fields or not set(operators) <= COMPARISONS:
            continue
        field, value = fields[-1], param.value or ""
        if (field in NUMBER_FIELDS and not NUMBER.fullmatch(value)) or (
            field in DATE_FIELDS and not is_date(value)
        ):
            kind = "a number" if field in NUMBER_FIELDS else "a date (ISO 8601, or milliseconds)"
            raise InvalidParameter(
                f"Query parameter {param.key!r}: {field} is {kind}; compare it with one.",
                details={"param": param.key, "value": param.value},
            )


def is_date(text: str) -> bool:
    """True for what Strapi reads as a date: ISO 8601 (``2026-01-31``, ``...T12:00:00.000Z``) or epoch ms."""
    if text.isdigit():
        return len(text) <= 15
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return bool(re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.]+(Z|[+-][0-9]{2}:?[0-9]{2})?)?", text))


def serve_media(read: MediaRead) -> Response:
    """Anonymous reads through the shared cache, signed-in reads with the caller's token, uncached."""
    settings, tenant, cache = media_config(), current_tenant(), content_cache()
    identity = check_policy(settings.policy, "read")
    headers = forwarded_headers()
    if identity is None:
        signature = read.signature(headers.get(RESPONSE_FORMAT_HEADER))
        load = media_loader(tenant.strapi, read, headers, cache.clock)
        served = cache.serve(tenant.name, MEDIA, signature, settings.freshness, load)
        return media_response(served, settings.cache_control, cache.clock())
    credentials = tenant.strapi.authorization(identity.token)
    load = media_loader(tenant.strapi, read, {**headers, **credentials}, cache.clock)
    return media_response(Served(load(), "BYPASS"), "private, no-store", cache.clock())


def media_loader(
    client: StrapiClient, read: MediaRead, headers: dict[str, str], clock: Callable[[], float]
) -> Callable[[], Entry]:
    """A call that fetches ``read`` from Strapi; it needs no request context (background refresh)."""

    def load() -> Entry:
        answer = client.request("GET", read.strapi_path, params=read.query_string, headers=headers)
        return Entry.build(answer.status, answer.body, answer.content_type, clock())

    return load


def media_response(served: Served, cache_control: str, now: float) -> Response:
    """The client's answer: Strapi's body and status, X-Cache, and for 200s ETag and Cache-Control."""
    entry = served.entry
    headers = entry_headers(served, cache_control, now)
    if not_modified(request.headers.get("If-None-Match"), entry):
        return Response(status=304, headers=headers)
    return Response(entry.body, status=entry.status, headers=headers, content_type=entry.content_type)


# -- invalidation --------------------------------------------------------------------------------


def drop_media(tenant: str) -> list[str]:
    """Drop the cached media lists and the collections configured to embed media."""
    return content_cache().invalidate(tenant, [MEDIA, *media_config().embedded_in])


def changed_by_webhook(event: str) -> tuple[dict[str, Any], int]:
    """Strapi's media.* webhook: drop what shows media; 503 when the store refuses."""
    tenant = current_tenant().name
    try:
        dropped = drop_media(tenant)
    except StoreUnavailable as exc:
        log.error("media invalidation of tenant %s refused by the shared store: %s", tenant, exc)
        raise CacheUnavailable() from exc
    return {"event": event, "model": "file", "tenant": tenant, "invalidated": dropped}, 200


def media_changed_after(send: Callable[[], StrapiResponse]) -> StrapiResponse:
    """Run a media write; drop the media lists when it worked, or may have (read-your-writes)."""
    try:
        answer = send()
    except ApiError:
        _drop_media_quietly()
        raise
    if answer.ok:
        _drop_media_quietly()
    return answer


def _drop_media_quietly() -> None:
    """After a write: a store fault is logged (reads bypass a store that is down)."""
    try:
        drop_media(current_tenant().name)
    except StoreUnavailable as exc:
        log.error("invalidation of the media lists after a write failed: %s", exc)


# -- files -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileMeta:
    """What Strapi says of a file: its size, type and modification time, and the ETag made of them."""

    length: int
    content_type: str
    last_modified: datetime | None

    @classmethod
    def of(cls, upstream: requests.Response) -> FileMeta:
        """Read from Strapi's answer to a HEAD or a whole GET (502 without a Content-Length)."""
        length = upstream.headers.get("Content-Length", "")
        if not length.isdigit():
            upstream.close()
            raise UpstreamError("Strapi sent a file without its length.")
        content_type = upstream.headers.get("Content-Type") or "application/octet-stream"
        return cls(int(length), content_type, parse_date(upstream.headers.get("Last-Modified")))

    @property
    def etag(self) -> str | None:
        """A strong validator from size and modification time (as nginx makes it); None without a time."""
        if self.last_modified is None:
            return None
        return f"{self.length:x}-{int(self.last_modified.timestamp()):x}"

    def headers(self, cache_control: str) -> list[tuple[str, str]]:
        """The validators and policies every answer about this file carries."""
        headers = [("Accept-Ranges", "bytes"), ("Cache-Control", cache_control), *FILE_SECURITY_HEADERS]
        if self.last_modified is not None:
            headers += [("ETag", f'"{self.etag}"'), ("Last-Modified", http_date(self.last_modified))]
        return headers


class Relay:
    """A WSGI body that copies Strapi's file in chunks; closing it closes the connection to Strapi."""

    def __init__(self, upstream: requests.Response) -> None:
        self.upstream = upstream

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.upstream.raw.stream(CHUNK, decode_content=False)
        except Exception as exc:  # cut off after the headers: the client sees a short body, no more
            log.warning("file from Strapi cut off mid-body: %r", exc)
            raise

    def close(self) -> None:
        """Give the connection back (or drop it, if the body was not read to its end)."""
        self.upstream.close()


CONDITIONS = ("If-None-Match", "If-Modified-Since")


@bp.get("/uploads/<name>")
def download(name: str) -> Response:
    """One of Strapi's files, streamed, with ETag, Last-Modified, Range and conditional requests."""
    path = f"uploads/{checked_file_name(name)}"
    headers = request.headers
    if request.method == "HEAD" or "Range" in headers or any(h in headers for h in CONDITIONS):
        return answer_from(FileMeta.of(open_file("HEAD", path)), path)
    upstream = open_file("GET", path)
    return file_response(upstream, 200, FileMeta.of(upstream))


def checked_file_name(name: str) -> str:
    """The name when it is one plain segment (no leading dot, no '..'), else 404 without asking Strapi."""
    if not FILE_NAME.fullmatch(name) or ".." in name:
        raise NotFound("There is no such file.")
    return name


def open_file(method: str, path: str, span: tuple[int, int] | None = None) -> requests.Response:
    """Strapi's answer about the file (HEAD: closed already); 404 when it has none, 502 on surprises."""
    headers = {**forwarded_headers(), "Accept": "*/*", "Accept-Encoding": "identity"}
    if span is not None:
        headers["Range"] = f"bytes={span[0]}-{span[1] - 1}"
    upstream = current_tenant().strapi.stream(method, path, headers=headers)
    if upstream.status_code != (200 if span is None else 206) or method == "HEAD":
        upstream.close()
    if upstream.status_code == 404:
        raise NotFound("There is no such file.")
    if upstream.status_code != (200 if span is None else 206):
        raise UpstreamError(f"Strapi answered {upstream.status_code} for a file.")
    return upstream


def answer_from(meta: FileMeta, path: str) -> Response:
    """Answer a HEAD, a conditional or a ranged request once the file's validators are known."""
    cache_control = media_config().cache_control
    modified = is_resource_modified(request.environ, etag=meta.etag, last_modified=meta.last_modified)
    if not modified:
        return Response(status=304, headers=meta.headers(cache_control))
    if request.method == "HEAD":
        headers = [*meta.headers(cache_control), ("Content-Length", str(meta.length))]
        return Response(status=200, headers=headers, content_type=meta.content_type)
    span = requested_span(meta)
    if span is None:
        upstream = open_file("GET", path)
        return file_response(upstream, 200, FileMeta.of(upstream))
    upstream = open_file("GET", path, span)
    content_range = f"bytes {span[0]}-{span[1] - 1}/{meta.length}"
    if upstream.headers.get("Content-Range") != content_range:
        upstream.close()
        raise UpstreamError("Strapi's partial answer does not match the file it described.")
    return file_response(upstream, 206, meta, content_range)


def requested_span(meta: FileMeta) -> tuple[int, int] | None:
    """The one byte range to send (start, stop), or None for the whole file; 416 past its end."""
    ranges = parse_range_header(request.headers.get("Range"))
    if ranges is None or ranges.units != "bytes" or len(ranges.ranges) != 1 or not still_valid(meta):
        return None  # no usable Range (RFC 9110 14.2: ignore it), or If-Range no longer matches
    start, stop = ranges.ranges[0]
    if start < -meta.length and stop is None and meta.length > 0:
        return 0, meta.length  # a suffix longer than the file is the whole file (RFC 9110 14.1.3)
    span = ranges.range_for_length(meta.length)
    if span is None:
        raise RangeNotSatisfiable(
            f"The file has {meta.length} bytes; the range asked for is outside them.",
            headers={"Content-Range": f"bytes */{meta.length}"},
        )
    return span


def still_valid(meta: FileMeta) -> bool:
    """True without If-Range, or when it names this very file (a strong ETag, or the exact date)."""
    header = request.headers.get("If-Range")
    if header is None:
        return True
    if_range = parse_if_range_header(header)
    if if_range.etag is not None:
        return meta.etag is not None and f'"{meta.etag}"' == header.strip()
    return if_range.date is not None and if_range.date == meta.last_modified


class RangeNotSatisfiable(ApiError):
    status, code, message = 416, "range_not_satisfiable", "The range is outside the file."


def file_response(
    upstream: requests.Response, status: int, meta: FileMeta, content_range: str | None = None
) -> Response:
    """Stream Strapi's body to the client as it arrives (bounded memory, whatever the file's size)."""
    headers = meta.headers(media_config().cache_control)
    length = upstream.headers.get("Content-Length", "")
    if content_range is not None:
        headers.append(("Content-Range", content_range))
    headers.append(("Content-Length", length))
    return Response(
        Relay(upstream),
        status=status,
        headers=headers,
        content_type=meta.content_type,
        direct_passthrough=True,
    )


# -- uploads and deletes ---------------------------------------------------------------------------


class MultipartCopy:
    """An upload re-encoded as it is parsed: allowed parts only, canonical headers, a fresh boundary.

    What reaches Strapi is what was checked, however Strapi's parser (formidable) would have read
    the client's bytes (a second Content-Disposition, bare LF line breaks...).
    """

    def __init__(self, sink: IO[bytes], boundary: bytes) -> None:
        self.decoder = MultipartDecoder(boundary, DECODER_BUFFER, max_parts=MAX_PARTS)
        self.sink = sink
        self.boundary = secrets.token_hex(16).encode()
        self.digest = hashlib.sha256()  # of the parts, not the boundary: a retry's body has another
        self.parts = 0
        self.complete = False
        self._field: str | None = None  # the name of the form field (not file) being copied
        self._info = bytearray()

    @property
    def content_type(self) -> str:
        """The Content-Type of the re-encoded body."""
        return f"multipart/form-data; boundary={self.boundary.decode()}"

    def feed(self, chunk: bytes | None) -> None:
        """Parse the next chunk (None: the end) and copy what it completes."""
        try:
            self.decoder.receive_data(chunk)
            while not self.complete and (event := self.decoder.next_event()) is not NEED_DATA:
                self._copy(event)
        except (ValueError, RequestEntityTooLarge) as exc:  # also UnicodeDecodeError in part headers
            raise BadRequest("The body is not well-formed multipart/form-data.") from exc

    def _copy(self, event: Any) -> None:
        if isinstance(event, (Field, File)):
            self._start_part(event)
        elif isinstance(event, Data):
            self._write(event.data)
            if self._field == "fileInfo":
                self._collect_info(event.data, finished=not event.more_data)
        elif isinstance(event, Epilogue):
            self.sink.write(b"\r\n" * bool(self.parts) + b"--" + self.boundary + b"--\r\n")
            self.complete = True

    def _start_part(self, event: Field | File) -> None:
        if event.name not in UPLOAD_PARTS:
            raise InvalidParameter(
                f"Form field {event.name!r} is not accepted in an upload (only 'files' and 'fileInfo').",
                details={"field": event.name, "allowed": sorted(UPLOAD_PARTS)},
            )
        self._field = event.name if isinstance(event, Field) else None
        self._info.clear()
        head = "Content-Disposition: form-data; " + format_multipart_header_param("name", event.name)
        if isinstance(event, File):
            part_type = event.headers.get("Content-Type", "")
            part_type = part_type if PART_TYPE.fullmatch(part_type) else "application/octet-stream"
            head += "; " + format_multipart_header_param("filename", event.filename)
            head += f"\r\nContent-Type: {part_type}"
        self.sink.write(b"\r\n" * bool(self.parts) + b"--" + self.boundary + b"\r\n")
        self.parts += 1
        self._write(head.encode() + b"\r\n\r\n")

    def _write(self, data: bytes) -> None:
        self.sink.write(data)
        self.digest.update(data)

    def _collect_info(self, data: bytes, *, finished: bool) -> None:
        """Check a fileInfo field is a JSON object (or a list of them): Strapi fails on anything else
        with a 500, which would be an unknown outcome holding the client's Idempotency-Key."""
        self._info += data
        if len(self._info) > MAX_FILE_INFO:
            raise InvalidParameter(
                f"'fileInfo' is larger than {MAX_FILE_INFO} bytes.", details={"field": "fileInfo"}
            )
        if not finished:
            return
        try:
            info = json.loads(bytes(self._info))
        except ValueError:
            info = None
        if not (
            isinstance(info, dict) or (isinstance(info, list) and all(isinstance(i, dict) for i in info))
        ):
            raise InvalidParameter(
                "'fileInfo' must be a JSON object (or a list of them, one per file).",
                details={"field": "fileInfo"},
            )


@bp.post("/api/upload")
def upload() -> Response:
    """Upload files (with ``?id=``: replace a file, or change its fileInfo), sent with the API token."""
    settings = media_config()
    check_policy(settings.policy, "write")
    query = upload_query()
    client = current_tenant().strapi
    with tempfile.TemporaryFile(dir=settings.spool_dir) as spool:
        copy = MultipartCopy(spool, multipart_boundary())
        copy_body(copy, settings.max_upload)
        headers = {**forwarded_headers(), **client.service_authorization(), "Content-Type": copy.content_type}
        timeout = (client.timeout[0], settings.upload_timeout)

        def send() -> StrapiResponse:
            spool.seek(0)
            return client.request(
                "POST", "api/upload", params=query.query_string, data=spool, headers=headers, timeout=timeout
            )

        return perform(
            MEDIA, copy.digest.hexdigest(), query, lambda: media_changed_after(send), unknown_upload
        )


def upload_query() -> WriteQuery:
    """The upload's query: nothing, or ``id`` once, as a file id (400 otherwise)."""
    params = canonical(parse_query(request.environ.get("QUERY_STRING", "")))
    refuse_unlisted(params, frozenset({"id"}))
    if params and (len(params) > 1 or params[0].key != "id" or not FILE_ID.fullmatch(params[0].value or "")):
        raise InvalidParameter(
            "id is accepted once, as a file's numeric id.", details={"param": params[0].key}
        )
    return WriteQuery(params, None)


def multipart_boundary() -> bytes:
    """The boundary of a multipart/form-data body (415 for another type, 400 without a usable one)."""
    mimetype, options = parse_options_header(request.headers.get("Content-Type"))
    if mimetype != "multipart/form-data":
        raise UnsupportedMediaType("An upload is multipart/form-data, with the files in 'files'.")
    boundary = options.get("boundary", "")
    if not BOUNDARY.fullmatch(boundary):
        raise BadRequest("The multipart/form-data body has no usable boundary.")
    return boundary.encode()


def copy_body(copy: MultipartCopy, limit: int) -> None:
    """Read the body as it arrives into ``copy``: 413 one byte past ``limit``, 400 when it is cut short."""
    environ = request.environ
    stream, declared = environ["wsgi.input"], get_content_length(environ)
    if declared is None and not environ.get("wsgi.input_terminated"):
        declared = 0  # no length and a server that does not end the stream: nothing to read
    remaining, received = (limit + 1 if declared is None else declared), 0
    while remaining > 0:
        try:
            chunk = stream.read(min(CHUNK, remaining))
        except Exception as exc:  # the client went away, or a bad chunk size
            raise BadRequest("The request body could not be read.") from exc
        if not chunk:
            break
        received, remaining = received + len(chunk), remaining - len(chunk)
        if received > limit:
            raise too_large(limit)
        copy.feed(chunk)
    if declared is not None and received < declared:
        raise BadRequest("The request body ended before its Content-Length.")
    copy.feed(None)
    if not copy.complete:
        raise BadRequest("The multipart/form-data body ends before its closing boundary.")


def unknown_upload(claim: Claim) -> StrapiResponse | None:
    """A retry after an unknown outcome: a file carries nothing to recognise it by, so say so (409)."""
    raise UploadOutcomeUnknown()


@bp.delete("/api/upload/files/<file_id>")
def delete_file(file_id: str) -> Response:
    """Delete a file (and its formats) from the media library, with the API token."""
    check_policy(media_config().policy, "write")
    path = f"api/upload/files/{checked_file_id(file_id)}"
    refuse_unlisted(parse_query(request.environ.get("QUERY_STRING", "")), frozenset())
    send = lambda: media_changed_after(lambda: service(path, "DELETE"))  # noqa: E731
    return perform(MEDIA, None, NO_QUERY, send, lambda _: deleted(path))


def service(path: str, method: str) -> StrapiResponse:
    """One call to Strapi's media library with the server's API token."""
    client = current_tenant().strapi
    return client.request(method, path, headers={**forwarded_headers(), **client.service_authorization()})


def deleted(path: str) -> StrapiResponse | None:
    """After an unknown outcome: 204 when the file is gone already, else None (delete it)."""
    return StrapiResponse(204, b"") if service(path, "GET").status == 404 else None


@bp.before_request
def _begin_audit() -> None:
    """Open the audit entry of a media write before authentication, so refusals are audited too."""
    action = AUDITED.get(request.endpoint or "")
    if action is not None:
        audit.begin(action, MEDIA, (request.view_args or {}).get("file_id"))


bp.after_request(audit.emit)


# -- set-up ----------------------------------------------------------------------------------------


def configure(config: Any) -> None:
    """Validate the process-wide upload settings and make the spool directory."""
    config.setdefault("MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD)
    config.setdefault("UPLOAD_TIMEOUT", DEFAULT_UPLOAD_TIMEOUT)
    config["MAX_UPLOAD_BYTES"] = as_number(config, "MAX_UPLOAD_BYTES", int, minimum=1)
    config["UPLOAD_TIMEOUT"] = as_number(config, "UPLOAD_TIMEOUT", float, minimum=0.001)
    config["MEDIA_SPOOL_DIR"] = os.path.join(config["CACHE_DIR"], "spool")
    os.makedirs(config["MEDIA_SPOOL_DIR"], exist_ok=True)


def configure_tenant(config: dict[str, Any]) -> None:
    """Validate one tenant's media settings into its MediaConfig (``MEDIA``)."""
    config["MEDIA_EMBEDDED_IN"] = as_names(config, "MEDIA_EMBEDDED_IN")
    unknown = [name for name in config["MEDIA_EMBEDDED_IN"] if name not in config["COLLECTIONS"]]
    if unknown:
        raise ConfigError(
            f"{env_name('MEDIA_EMBEDDED_IN')} names {unknown}, not in {env_name('COLLECTIONS')}"
        )
    derived = f"public, max-age={config['CLIENT_MAX_AGE']}, s-maxage={config['SHARED_MAX_AGE']}"
    config["MEDIA_CACHE_CONTROL"] = as_str(config, "MEDIA_CACHE_CONTROL") or derived
    config["MEDIA"] = MediaConfig(
        policy=config["MEDIA_POLICY"],
        freshness=Freshness(config["CACHE_TTL"], config["STALE_WHILE_REVALIDATE"], config["STALE_IF_ERROR"]),
        cache_control=config["MEDIA_CACHE_CONTROL"],
        max_upload=config["MAX_UPLOAD_BYTES"],
        upload_timeout=config["UPLOAD_TIMEOUT"],
        embedded_in=config["MEDIA_EMBEDDED_IN"],
        spool_dir=config["MEDIA_SPOOL_DIR"],
    )


def init_app(app: Flask) -> None:
    """Stream upload bodies past the JSON body limit and register the routes (settings: configure*)."""
    app.extensions.setdefault("bffproxy.streamed_bodies", {})[("POST", "/api/upload")] = app.config[
        "MAX_UPLOAD_BYTES"
    ]
    app.register_blueprint(bp)
