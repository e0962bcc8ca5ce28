"""Every query and path shape tried against the real Strapi 5, and what bffproxy does with it.

This table is the issue-8 record of "which parameter shapes actually change Strapi's answer".
``test_query_shapes_e2e.py`` re-checks BOTH columns on every run against the seeded Strapi, so the
table cannot go stale: the ``strapi`` column is what Strapi answers its Public role when called
directly, the ``bff`` column is what an anonymous caller of bffproxy gets (a signed-in reader gets
the same, except 403 where the ``drafts`` policy applies).

``strapi`` values: ``published`` (published versions only), ``drafts`` (draft versions in the
answer), ``drafts-match`` (a filter or sort on a draft-only title selects documents: an oracle on
unpublished text), ``empty`` (200 with no items), or an HTTP status Strapi answers with.
``bff`` values: ``200`` (same answer as Strapi's published one), an error code of bffproxy's
envelope, or ``strapi-<status>`` (Strapi's own error passed through).
``{doc}`` is a published document, ``{draft}`` a draft-only one, ``{draft_title}`` the latter's
title (percent-encoded): no published document has it.
"""

from __future__ import annotations

from typing import NamedTuple


class Shape(NamedTuple):
    path: str
    query: str
    strapi: str
    bff: str
    why: str


SHAPES: list[Shape] = [
    Shape("/api/articles", "", "published", "200", "the plain list"),
    Shape("/api/articles", "status=published", "published", "200", "the one accepted status"),
    Shape("/api/articles", "status=draft", "drafts", "drafts_not_allowed", "Strapi gives Public drafts"),
    Shape("/api/articles", "status=bogus", "drafts", "invalid_parameter", "any other value is drafts too"),
    Shape("/api/articles", "status=", "drafts", "invalid_parameter", "empty value"),
    Shape("/api/articles", "status", "drafts", "invalid_parameter", "bare name: qs null"),
    Shape("/api/articles", "%5Bstatus%5D=draft", "drafts", "invalid_parameter", "leading bracket, encoded"),
    Shape("/api/articles", "[status]=draft", "drafts", "invalid_parameter", "leading bracket"),
    Shape("/api/articles", "status[]=draft", "drafts", "invalid_parameter", "array"),
    Shape("/api/articles", "status[0]=draft", "drafts", "invalid_parameter", "indexed array"),
    Shape(
        "/api/articles", "status[0]=published", "drafts", "invalid_parameter", "an array is not 'published'"
    ),
    Shape("/api/articles", "status=published&status=draft", "drafts", "invalid_parameter", "repeated"),
    Shape("/api/articles", "st%61tus=draft", "drafts", "drafts_not_allowed", "encoded letters: status"),
    Shape("/api/articles", "[[status]]=draft", "published", "invalid_parameter", "qs: key '[status]'"),
    Shape("/api/articles", "status.x=draft", "published", "invalid_parameter", "allowDots is off"),
    Shape("/api/articles", "status%3Ddraft", "published", "invalid_parameter", "key 'status=draft'"),
    Shape("/api/articles", "%26status=draft", "published", "invalid_parameter", "key '&status'"),
    Shape("/api/articles", "publicationState=preview", "published", "invalid_parameter", "v4 name, ignored"),
    Shape("/api/articles", "publicationState=live", "published", "200", "v4 name, ignored, accepted"),
    Shape("/api/articles", "hasPublishedVersion=false", "empty", "invalid_parameter", "not in the list"),
    Shape("/api/articles", "foo=bar", "published", "invalid_parameter", "Strapi ignores unknown names"),
    Shape("/api/articles", "lookup=1", "400", "invalid_parameter", "Strapi refuses some names itself"),
    Shape("/api/articles", "__proto__[status]=draft", "published", "invalid_parameter", "qs drops it"),
    Shape("/api/articles", "filters[publishedAt][$null]=true", "empty", "200", "published rows only"),
    Shape("/api/articles", "filters[title][$containsi]=draft", "published", "200", "a filter"),
    Shape("/api/articles", "sort=title:asc&sort=id:desc", "published", "200", "repeated sort"),
    Shape("/api/articles", "locale=fr", "published", "200", "locale"),
    Shape("/api/articles", "pagination[pageSize]=100&fields[0]=title", "published", "200", "pagination"),
    Shape("/api/categories", "populate[articles][status]=draft", "400", "strapi-400", "Strapi refuses it"),
    Shape("/api/categories", "populate[articles][count]=true", "published", "200", "counts published only"),
    Shape("/api/categories", "populate=articles", "published", "200", "populated: published only"),
    Shape("/api/categories", "[status]=draft", "published", "invalid_parameter", "no draft & publish"),
    Shape(
        "/api/categories",
        "filters[articles][title][$eq]={draft_title}",
        "drafts-match",
        "invalid_parameter",
        "relation oracle",
    ),
    Shape(
        "/api/categories",
        "filters[$or][0][articles][title][$eq]={draft_title}",
        "drafts-match",
        "invalid_parameter",
        "ditto",
    ),
    Shape(
        "/api/articles",
        "filters[category][articles][title][$eq]={draft_title}",
        "drafts-match",
        "invalid_parameter",
        "two hops",
    ),
    Shape(
        "/api/articles",
        "populate[category][filters][articles][title][$eq]={draft_title}",
        "drafts-match",
        "invalid_parameter",
        "inside populate",
    ),
    Shape(
        "/api/articles",
        "filters[category][name][$eq]=Science",
        "published",
        "200",
        "into a collection without drafts",
    ),
    Shape(
        "/api/categories",
        "populate[articles][filters][title][$eq]={draft_title}",
        "published",
        "200",
        "populated rows are published only",
    ),
    Shape("/api/articles/{doc}", "", "published", "200", "one document"),
    Shape("/api/articles/{doc}", "status=draft", "drafts", "drafts_not_allowed", "its draft version"),
    Shape("/api/articles/{doc}", "%5Bstatus%5D=draft", "drafts", "invalid_parameter", "its draft version"),
    Shape("/api/articles/{doc}%3Fstatus=draft", "", "404", "not_found", "was pasted into the URL"),
    Shape("/api/articles/%3Fstatus=draft%26pagination%5BpageSize%5D=100", "", "404", "not_found", "ditto"),
    Shape("/api/articles/%23", "", "404", "not_found", "'#' once truncated the URL"),
    Shape("/api/articles/{doc}.json", "", "404", "not_found", "not a documentId"),
    Shape("/api/articles/{draft}", "", "404", "strapi-404", "draft-only: not found"),
    Shape("/api/articles/{draft}", "[status]=draft", "drafts", "invalid_parameter", "draft-only, bracketed"),
]
