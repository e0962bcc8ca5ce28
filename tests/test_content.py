"""The content blueprint for anonymous callers (fake Strapi via responses)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
from flask.testing import FlaskClient

from .conftest import STRAPI, FakeClock, strapi_list

LIST = f"{STRAPI}/api/articles"


def test_list_passes_through_and_second_request_is_a_hit(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    strapi.get(LIST, json=strapi_list("One", "Two"))
    first = client.get("/api/articles")
    second = client.get("/api/articles")
    assert first.status_code == second.status_code == 200
    assert first.get_json() == strapi_list("One", "Two")
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert len(strapi.calls) == 1


def test_query_order_does_not_matter_and_is_forwarded_canonically(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    strapi.get(LIST, json=strapi_list("A"))
    client.get("/api/articles?sort=title&filters[section][$eq]=news&pagination[page]=2")
    hit = client.get("/api/articles?pagination[page]=2&filters[section][$eq]=news&sort=title")
    assert hit.headers["X-Cache"] == "HIT"
    sent = parse_qsl(urlsplit(strapi.calls[0].request.url).query)
    assert sent == sorted(sent)
    assert ("filters[section][$eq]", "news") in sent


def test_document_by_document_id(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(f"{LIST}/abc123", json={"data": {"documentId": "abc123"}, "meta": {}})
    response = client.get("/api/articles/abc123?populate=category")
    assert response.get_json()["data"]["documentId"] == "abc123"
    assert strapi.calls[0].request.url.endswith("/api/articles/abc123?populate=category")


def test_unknown_collection_is_404_without_calling_strapi(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    response = client.get("/api/users")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert len(strapi.calls) == 0


def test_strapi_4xx_pass_through_and_are_not_cached(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    body = {"data": None, "error": {"status": 400, "name": "ValidationError", "message": "Invalid key nope"}}
    strapi.get(LIST, status=400, json=body)
    for _ in range(2):
        response = client.get("/api/articles?filters[nope]=1")
        assert response.status_code == 400
        assert response.get_json() == body
        assert response.headers["Cache-Control"] == "no-store"
    assert len(strapi.calls) == 2


REFUSED = [
    ("/api/articles?status=draft", 400, "drafts_not_allowed"),
    # Every other shape Strapi would read as "not published" is refused as a bad parameter.
    *(
        (f"/api/articles?{query}", 400, "invalid_parameter")
        for query in (
            "status=bogus",
            "status=",
            "status",
            "status[0]=draft",
            "status[]=draft",
            "%5Bstatus%5D=draft",
            "[status]=draft",
            "status=published&status=draft",
            "status=published&[status]=draft",
            "st%61tus=draft&status=published",
            "publicationState=preview",
        )
    ),
    # A documentId is never pasted into Strapi's URL: anything not of its shape is a 404.
    *(
        (f"/api/articles/{path}", 404, "not_found")
        for path in (
            "abc%3Fstatus=draft",
            "%3Fstatus=draft%26pagination%5BpageSize%5D=100",
            "%23",
            "a.b",
            "x%0a",
        )
    ),
]


@pytest.mark.parametrize(("target", "status", "code"), REFUSED)
def test_drafts_never_reach_anonymous_callers(
    client: FlaskClient, strapi: responses.RequestsMock, target: str, status: int, code: str
) -> None:
    for method in (client.get, client.head):
        response = method(target)
        assert response.status_code == status
    assert client.get(target).get_json()["error"]["code"] == code
    assert len(strapi.calls) == 0


def test_unlisted_parameters_are_refused_by_name(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    for query, name in (
        ("foo=1", "foo"),
        ("[foo]=1", "[foo]"),
        ("hasPublishedVersion=false", "hasPublishedVersion"),
        ("filters[a]=1&_q=x", "_q"),
    ):
        response = client.get(f"/api/articles?{query}")
        assert response.status_code == 400, query
        error = response.get_json()["error"]
        assert (error["code"], error["details"]["param"]) == ("invalid_parameter", name), query
    assert len(strapi.calls) == 0


@pytest.mark.parametrize("query", ["filters[$or]=x", "filters[title][$between][0]=a", "filters[$not][0]=x"])
def test_filter_shapes_strapi_fails_on_are_refused_before_strapi(
    client: FlaskClient, strapi: responses.RequestsMock, query: str
) -> None:
    for target in (f"/api/articles?{query}", f"/api/articles/{'d' * 24}?{query}"):
        response = client.get(target)
        assert (response.status_code, response.get_json()["error"]["code"]) == (400, "invalid_parameter"), (
            target
        )
    assert len(strapi.calls) == 0


def test_a_configured_extra_parameter_is_forwarded(config: dict, strapi: responses.RequestsMock) -> None:  # type: ignore[type-arg]
    from bffproxy import create_app

    config["QUERY_PARAMS"] = {"articles": "_q"}
    client = create_app(config).test_client()
    strapi.get(LIST, json=strapi_list("A"))
    assert client.get("/api/articles?_q=proxy").status_code == 200
    assert client.get("/api/categories?_q=proxy").status_code == 400
    assert urlsplit(strapi.calls[0].request.url).query == "_q=proxy"


def test_repeated_parameters_keep_their_order(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(LIST, json=strapi_list("A"))
    first = client.get("/api/articles?sort=title:asc&locale=en&sort=createdAt:desc")
    second = client.get("/api/articles?sort=createdAt:desc&sort=title:asc&locale=en")
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "MISS")
    sent = [urlsplit(call.request.url).query for call in strapi.calls]
    assert sent == [
        "locale=en&sort=title%3Aasc&sort=createdAt%3Adesc",
        "locale=en&sort=createdAt%3Adesc&sort=title%3Aasc",
    ]


def test_explicit_published_status_is_allowed(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(LIST, json=strapi_list("A"))
    assert client.get("/api/articles?status=published").status_code == 200


def test_etag_and_304(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(LIST, json=strapi_list("A"))
    first = client.get("/api/articles")
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = client.get("/api/articles", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert client.get("/api/articles", headers={"If-None-Match": '"other"'}).status_code == 200


def test_age_cache_control_and_vary(
    client: FlaskClient, strapi: responses.RequestsMock, clock: FakeClock
) -> None:
    strapi.get(LIST, json=strapi_list("A"))
    client.get("/api/articles")
    clock.advance(42)
    hit = client.get("/api/articles")
    assert hit.headers["Age"] == "42"
    # Downstream caches cannot be purged: a short s-maxage and no stale-* windows (defect 10).
    assert hit.headers["Cache-Control"] == "public, max-age=0, s-maxage=5"
    assert hit.headers["Vary"] == "Strapi-Response-Format, Authorization"


def test_ttl_per_collection(config: dict, strapi: responses.RequestsMock, clock: FakeClock) -> None:  # type: ignore[type-arg]
    from bffproxy import create_app

    config["CACHE_TTLS"] = "articles=10"
    app = create_app(config)
    app.extensions["bffproxy.cache"].clock = clock
    client = app.test_client()
    strapi.get(LIST, json=strapi_list("A"))
    client.get("/api/articles")
    clock.advance(9)
    assert client.get("/api/articles").headers["X-Cache"] == "HIT"
    clock.advance(2 + 3600)
    assert client.get("/api/articles").headers["X-Cache"] == "MISS"


def test_varying_header_is_part_of_the_key(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(LIST, json=strapi_list("A"))
    client.get("/api/articles", headers={"Strapi-Response-Format": "v4"})
    assert client.get("/api/articles").headers["X-Cache"] == "MISS"
    assert strapi.calls[0].request.headers["Strapi-Response-Format"] == "v4"


def test_only_strapis_v4_value_gets_its_own_entry(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    strapi.get(LIST, json=strapi_list("A"))
    assert client.get("/api/articles").headers["X-Cache"] == "MISS"
    for other in ("V4", "v5", "v4,v4"):  # Strapi answers these in its default format
        assert (
            client.get("/api/articles", headers={"Strapi-Response-Format": other}).headers["X-Cache"] == "HIT"
        )
    assert client.get("/api/articles", headers={"Strapi-Response-Format": " v4"}).headers["X-Cache"] == "MISS"
    sent = [call.request.headers.get("Strapi-Response-Format") for call in strapi.calls]
    assert sent == [None, "v4"]


def test_head_has_headers_and_no_body(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(LIST, json=strapi_list("A"))
    response = client.head("/api/articles")
    assert response.status_code == 200
    assert response.data == b""
    assert response.headers["X-Cache"] == "MISS"


def test_strapi_down_is_502_json(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(LIST, body=requests.ConnectionError("refused"))
    response = client.get("/api/articles")
    assert response.status_code == 502
    error = response.get_json()["error"]
    assert error["code"] == "upstream_unavailable"
    assert "Strapi is unavailable" in error["message"]


def test_strapi_timeout_is_504_json(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(LIST, body=requests.ReadTimeout("slow"))
    response = client.get("/api/articles")
    assert response.status_code == 504
    assert response.get_json()["error"]["code"] == "upstream_timeout"


def test_strapi_500_is_502_json(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(LIST, status=500, body="<html>boom</html>")
    response = client.get("/api/articles")
    assert response.status_code == 502
    assert response.get_json()["error"]["code"] == "upstream_error"


def test_stale_if_error_on_strapi_outage(
    client: FlaskClient, strapi: responses.RequestsMock, clock: FakeClock
) -> None:
    strapi.get(LIST, json=strapi_list("Kept"))
    client.get("/api/articles")
    clock.advance(1000)
    strapi.replace(responses.GET, LIST, body=requests.ConnectionError("down"))
    stale = client.get("/api/articles")
    assert stale.status_code == 200
    assert stale.headers["X-Cache"] == "STALE"
    assert stale.headers["Age"] == "1000"
    assert stale.get_json() == strapi_list("Kept")


def test_only_end_to_end_headers_reach_strapi(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(LIST, json=strapi_list("A"))
    client.get(
        "/api/articles",
        headers={
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "1",
            "Proxy-Authorization": "Basic eA==",
            "Cookie": "session=abc",
            "Accept-Language": "fr",
            "X-Request-ID": "trace-1",
        },
    )
    sent = strapi.calls[0].request.headers
    # Accept-Language too: Strapi 5 answers the same bytes whatever it says (locales are ?locale=).
    for hop in ("X-Secret-Hop", "Proxy-Authorization", "Cookie", "Accept-Language"):
        assert hop not in sent
    assert sent["X-Request-ID"] == "trace-1"
    assert "Authorization" not in sent  # anonymous reads go to Strapi's Public role


def test_if_none_match_weak_list_and_star_forms(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(LIST, json=strapi_list("A"))
    etag = client.get("/api/articles").headers["ETag"]
    for header in (f"W/{etag}", f'"nope", {etag}', "*"):
        response = client.get("/api/articles", headers={"If-None-Match": header})
        assert response.status_code == 304, header
        assert response.headers["ETag"] == etag
        assert response.headers["X-Cache"] == "HIT"


def test_repeated_or_bracketed_status_never_reaches_strapi_for_anonymous_callers(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    # Strapi parses these into an array or object, which is not 'published', so it returns drafts.
    for query in (
        "status=published&status=published",
        "status[0]=published",
        "status[]=published",
        "status[x]=published",
        "publicationState[0]=live",
        "publicationState=live&publicationState=live",
    ):
        response = client.get(f"/api/articles?{query}")
        assert response.status_code == 400, query
        assert response.get_json()["error"]["code"] == "invalid_parameter"
    assert len(strapi.calls) == 0


@pytest.mark.parametrize("fast_hits", [True, False])
def test_anonymous_reads_tell_an_nginx_cache_in_front_to_keep_them_at_most_a_second(
    config: dict[str, Any], strapi: responses.RequestsMock, clock: FakeClock, fast_hits: bool
) -> None:
    from bffproxy import create_app

    app = create_app({**config, "FAST_HITS": fast_hits})
    app.extensions["bffproxy.cache"].clock = clock
    client = app.test_client()
    strapi.get(LIST, json=strapi_list("A"))
    clock.now = 1_700_000_000.75  # nginx keeps "@T" through the whole second T: until .000 of T + 1
    miss = client.get("/api/articles")
    clock.advance(0.5)
    hit = client.get("/api/articles")
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    assert miss.headers["X-Accel-Expires"] == "@1700000000"
    assert hit.headers["X-Accel-Expires"] == "@1700000001"  # from the time of this answer


def test_the_nginx_lifetime_is_a_setting_and_only_public_200s_carry_it(
    config: dict[str, Any], strapi: responses.RequestsMock, clock: FakeClock
) -> None:
    from bffproxy import create_app

    config.update(ACCEL_EXPIRES="3", CACHE_CONTROL={"categories": "private, max-age=60"})
    app = create_app(config)
    app.extensions["bffproxy.cache"].clock = clock
    strapi.get(LIST, json=strapi_list("A"))
    strapi.get(f"{STRAPI}/api/categories", json=strapi_list("C"))
    strapi.get(f"{LIST}/nope", status=404, json={"data": None, "error": {"status": 404}})
    client = app.test_client()
    assert client.get("/api/articles").headers["X-Accel-Expires"] == "@1700000002"
    private = client.get("/api/categories")
    assert private.headers["Cache-Control"] == "private, max-age=60"
    assert "X-Accel-Expires" not in private.headers  # not public
    assert "X-Accel-Expires" not in client.get("/api/articles/nope").headers  # not a 200
    off = create_app({**config, "ACCEL_EXPIRES": "0"}).test_client()
    assert "X-Accel-Expires" not in off.get("/api/articles").headers
