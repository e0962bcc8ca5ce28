"""Strapi's official JavaScript client against Strapi and through bffproxy: the same calls, the same answers.

bffproxy claims to be a drop-in for Strapi's REST API: an app switches its base URL and changes
nothing else. This module checks that claim with ``@strapi/client`` (the version pinned in
``strapi/client/package-lock.json``, installed by ``strapi/client/install.sh``): every case below is
one client call (``client.collection('articles').find({...})``) made once with Strapi as the base
URL and once with bffproxy, in one node process (``strapi_client_runner.mjs``), and each test
compares the two answers: status, the client's error class, and the body (ids, order, fields,
``meta``).

Reads run first, Strapi's and bffproxy's answer to each case back to back, on the seed. Writes
come after, as scenarios (create, read it back, update, delete) run in full against Strapi and then
against bffproxy with the same titles; their answers are compared with the row ids, documentIds and
timestamps of the two separately created documents normalised.

Where bffproxy differs on purpose the case says so (``differs``) and asserts both sides: Strapi's
answer and bffproxy's documented refusal. The README lists them (Development, "Strapi's own client
against bffproxy").
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from .services import Gunicorn, Strapi, bff_env, http_ok

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "strapi_client_runner.mjs"
INSTALL = HERE.parents[1] / "strapi/client/install.sh"
SETTINGS = {
    "COLLECTIONS": "articles,categories,homepage",
    "SINGLE_TYPES": "homepage",
    "POLICIES__articles": "read=public,drafts=editor,write=editor",
    "POLICIES__categories": "read=public",
    "POLICIES__homepage": "read=public,drafts=editor,write=editor",
}
USERS = {"reader": "Reader-Passw0rd!", "editor": "Editor-Passw0rd!"}
FORGED = "not-a-token"
TITLE = f"Client e2e {uuid.uuid4().hex[:10]}"  # every document this module writes starts with it
MISSING_ID = "nosuchdocument0000000000"

Answer = dict[str, Any]
Check = Callable[[Answer, Answer], None]


def client_dir() -> Path:
    """Where strapi/client/install.sh installed @strapi/client (STRAPI_CLIENT_DIR)."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bffproxy/strapi-client"
    return Path(os.environ.get("STRAPI_CLIENT_DIR") or default)


# -- how the cases are written --------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    """A value read from the seeded Strapi when the module starts (a documentId, a title)."""

    name: str


@dataclass(frozen=True)
class Ref:
    """A value of an earlier case's answer in the same scenario and target (a created documentId)."""

    case: str
    path: str = "data.documentId"


@dataclass(frozen=True)
class Case:
    """One client call and how Strapi's and bffproxy's answers to it must compare."""

    name: str
    method: str
    args: tuple[Any, ...] = ()
    user: str | None = None  # None (anonymous), "reader", "editor", "api-token" or "forged"
    resource: str = "articles"
    kind: str = "collection"
    check: Check | None = None  # None: the same answer
    marks: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Scenario:
    """Calls run in order against one target, then in order against the other."""

    name: str
    cases: tuple[Case, ...]


def comparable(answer: Answer) -> Answer:
    """What must be equal between two targets: everything but the base URL of the request."""
    return {key: answer.get(key) for key in ("status", "error", "body")}


def same(strapi: Answer, bff: Answer) -> None:
    """bffproxy answers exactly what Strapi answers."""
    assert comparable(bff) == comparable(strapi)


_VOLATILE = {"id", "documentId", "createdAt", "updatedAt", "publishedAt"}


def normalised(value: Any) -> Any:
    """An answer about a separately created document: row ids, documentIds and times as their kind."""
    if isinstance(value, list):
        return [normalised(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        key: f"<{key}>" if key in _VOLATILE and item is not None else normalised(item)
        for key, item in value.items()
    }


def without_slugs(answer: Answer) -> tuple[Answer, list[Any]]:
    """The comparable answer with each returned document's own slug taken out, and those slugs."""
    rest = copy.deepcopy(comparable(answer))
    body = rest["body"]
    data = body.get("data") if isinstance(body, dict) else None
    documents = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    return rest, [document.pop("slug", None) for document in documents]


def same_document(strapi: Answer, bff: Answer) -> None:
    """The same answer about two documents made by the same calls, one in each target.

    Slugs differ on purpose: bffproxy fills an absent slug with ``<slugified title>-<8 hex>``
    (rules.py: unique without a look-up, recognisable on an idempotent retry), where the project's
    Strapi app fills it with the slugified title alone.
    """
    strapi_rest, strapi_slugs = without_slugs(strapi)
    bff_rest, bff_slugs = without_slugs(bff)
    assert normalised(bff_rest) == normalised(strapi_rest)
    for strapi_slug, bff_slug in zip(strapi_slugs, bff_slugs, strict=True):
        expected = r"" if strapi_slug is None else re.escape(strapi_slug) + r"-[0-9a-f]{8}"
        assert re.fullmatch(expected, bff_slug or ""), (strapi_slug, bff_slug)


def differs(strapi_status: int, bff_status: int, bff_code: str, strapi_name: str | None = None) -> Check:
    """A documented difference: Strapi answers ``strapi_status``, bffproxy refuses with its envelope."""

    def check(strapi: Answer, bff: Answer) -> None:
        assert strapi["status"] == strapi_status, strapi
        if strapi_name is not None:
            assert strapi["error"]["body"]["error"]["name"] == strapi_name, strapi
        assert bff["status"] == bff_status, bff
        assert bff["error"]["body"]["error"]["code"] == bff_code, bff

    check.__doc__ = f"Strapi {strapi_status}, bffproxy {bff_status} {bff_code}"
    return check


# -- the matrix -----------------------------------------------------------------------------------

PUBLISHED, DRAFT_ONLY, CATEGORY = Seed("published"), Seed("draft_only"), Seed("category")

READS = (
    # collection().find: filters
    Case("find", "find"),
    Case("find_filter_eq", "find", ({"filters": {"title": {"$eq": Seed("published_title")}}},)),
    Case("find_filter_implicit_eq", "find", ({"filters": {"section": "guide"}, "sort": "title"},)),
    Case(
        "find_filter_nested_and",
        "find",
        ({"filters": {"$and": [{"section": {"$eq": "news"}}, {"featured": {"$eq": True}}]}},),
    ),
    Case(
        "find_filter_or_in",
        "find",
        ({"filters": {"$or": [{"section": {"$in": ["opinion", "guide"]}}, {"featured": {"$eq": True}}]}},),
    ),
    Case(
        "find_filter_contains",
        "find",
        ({"filters": {"title": {"$contains": "cache"}}, "sort": ["title:asc"]},),
    ),
    Case("find_filter_not_containsi", "find", ({"filters": {"$not": {"title": {"$containsi": "CACHE"}}}},)),
    Case(
        "find_filter_or_nested_and",
        "find",
        (
            {
                "filters": {
                    "$or": [
                        {"$and": [{"section": {"$eq": "opinion"}}, {"featured": {"$eq": False}}]},
                        {"title": {"$startsWith": "Article 1"}},
                    ]
                },
                "sort": "title:desc",
            },
        ),
    ),
    Case(
        "find_filter_range",
        "find",
        ({"filters": {"id": {"$between": [5, 25]}, "excerpt": {"$notNull": True}}},),
    ),
    Case(
        "find_filter_operators",
        "find",
        (
            {
                "filters": {
                    "section": {"$ne": "news"},
                    "title": {"$endsWithi": "CACHE"},
                    "id": {"$notIn": [1, 2, 3], "$gte": 2},
                    "body": {"$null": False},
                }
            },
        ),
    ),
    Case("find_filter_relation", "find", ({"filters": {"category": {"name": {"$eq": "Technology"}}}},)),
    Case(
        "find_filter_relation_in",
        "find",
        ({"filters": {"category": {"slug": {"$in": ["news", "science"]}}, "featured": {"$eq": False}}},),
    ),
    # populate, fields, sort, pagination, status, locale
    Case("find_populate_string", "find", ({"populate": "category"},)),
    Case("find_populate_star", "find", ({"populate": "*"},)),
    Case("find_populate_array", "find", ({"populate": ["category"]},)),
    Case("find_populate_object", "find", ({"populate": {"category": {"fields": ["name", "slug"]}}},)),
    Case("find_populate_object_true", "find", ({"populate": {"category": True}},)),
    Case(
        "find_populate_filters",
        "find",
        ({"populate": {"category": {"filters": {"name": {"$eq": "News"}}}}, "fields": ["title"]},),
    ),
    Case("find_fields", "find", ({"fields": ["title", "section"]},)),
    Case("find_sort_string", "find", ({"sort": "title:desc"},)),
    Case("find_sort_array", "find", ({"sort": ["section:asc", "title:desc"]},)),
    Case("find_sort_relation", "find", ({"sort": ["category.name:desc", "title"], "fields": ["title"]},)),
    Case(
        "find_sort_relation_object", "find", ({"sort": {"category": {"name": "asc"}}, "fields": ["title"]},)
    ),
    Case("find_page", "find", ({"pagination": {"page": 2, "pageSize": 5}},)),
    Case(
        "find_page_without_count", "find", ({"pagination": {"page": 1, "pageSize": 3, "withCount": False}},)
    ),
    Case("find_page_size_over_max", "find", ({"pagination": {"pageSize": 500}},)),
    Case("find_start_limit", "find", ({"pagination": {"start": 3, "limit": 4}},)),
    Case("find_status_published", "find", ({"status": "published", "fields": ["title"]},)),
    Case("find_locale", "find", ({"locale": "en", "fields": ["title"]},)),  # no i18n here: ignored
    Case(
        "find_everything",
        "find",
        (
            {
                "filters": {
                    "$or": [{"section": {"$eq": "news"}}, {"category": {"name": {"$eq": "Culture"}}}]
                },
                "populate": {"category": {"fields": ["name"]}},
                "fields": ["title", "featured"],
                "sort": ["featured:desc", "title:asc"],
                "pagination": {"page": 2, "pageSize": 4},
                "status": "published",
            },
        ),
    ),
    # collection().findOne
    Case("findOne", "findOne", (PUBLISHED,)),
    Case(
        "findOne_populate_fields",
        "findOne",
        (PUBLISHED, {"populate": {"category": {"fields": ["name"]}}, "fields": ["title"]}),
    ),
    Case("findOne_status_published", "findOne", (PUBLISHED, {"status": "published"})),
    Case("findOne_draft_only_404", "findOne", (DRAFT_ONLY,)),
    Case("findOne_unknown_404", "findOne", (MISSING_ID,)),
    # a collection without drafts, and its relation into articles
    Case("categories_find", "find", ({"sort": "name:asc"},), resource="categories"),
    Case(
        "categories_populate_articles",
        "find",
        ({"populate": {"articles": {"fields": ["title"], "sort": ["title:asc"]}}},),
        resource="categories",
    ),
    Case(
        "categories_populate_articles_filters",
        "find",
        ({"populate": {"articles": {"filters": {"title": {"$contains": "cache"}}, "fields": ["title"]}}},),
        resource="categories",
    ),
    Case("categories_findOne", "findOne", (CATEGORY, {"populate": "articles"}), resource="categories"),
    # Strapi's own 400s pass through
    Case("error_filter_key", "find", ({"filters": {"nope": {"$eq": 1}}},)),
    Case("error_filter_operator", "find", ({"filters": {"title": {"$nope": "x"}}},)),
    Case("error_sort", "find", ({"sort": "nope:asc"},)),
    Case("error_populate", "find", ({"populate": "nope"},)),
    Case("error_pagination_mixed", "find", ({"pagination": {"page": 1, "start": 2}},)),
    # signed in
    Case("reader_find", "find", ({"fields": ["title"], "sort": "title:asc"},), user="reader"),
    Case("reader_findOne", "findOne", (PUBLISHED,), user="reader"),
    Case(
        "editor_find_drafts",
        "find",
        (
            {
                "status": "draft",
                "fields": ["title", "publishedAt"],
                "sort": "title:asc",
                "pagination": {"pageSize": 50},
            },
        ),
        user="editor",
    ),
    Case("editor_findOne_draft", "findOne", (DRAFT_ONLY, {"status": "draft"}), user="editor"),
    # deliberate differences
    Case(
        "anonymous_find_drafts", "find", ({"status": "draft"},), check=differs(200, 400, "drafts_not_allowed")
    ),
    Case(
        "anonymous_findOne_draft",
        "findOne",
        (DRAFT_ONLY, {"status": "draft"}),
        check=differs(200, 400, "drafts_not_allowed"),
    ),
    Case("status_bogus", "find", ({"status": "bogus"},), check=differs(200, 400, "invalid_parameter")),
    Case(
        "reader_find_drafts",
        "find",
        ({"status": "draft"},),
        user="reader",
        check=differs(200, 403, "forbidden"),
    ),
    Case("unknown_parameter", "find", ({"foo": "bar"},), check=differs(200, 400, "invalid_parameter")),
    Case(
        "categories_filter_into_drafts",
        "find",
        ({"filters": {"articles": {"title": {"$contains": "cache"}}}},),
        resource="categories",
        check=differs(200, 400, "invalid_parameter"),
    ),
    Case(
        "categories_sort_into_drafts",
        "find",
        ({"sort": "articles.title:asc"},),
        resource="categories",
        check=differs(200, 400, "invalid_parameter"),
    ),
    Case(
        "forged_token",
        "find",
        user="forged",
        check=differs(401, 401, "invalid_token", strapi_name="UnauthorizedError"),
    ),
    Case("api_token_find", "find", user="api-token", check=differs(200, 401, "invalid_token")),
)


def single(name: str, method: str, *args: Any, **options: Any) -> Case:
    """A call of client.single('homepage')."""
    return Case(name, method, args, resource="homepage", kind="single", **options)


SINGLE_READS = (
    single("single_find", "find"),
    single("single_find_fields", "find", {"fields": ["title", "tagline"]}),
    single("single_find_status_published", "find", {"status": "published"}),
    single("single_find_drafts_editor", "find", {"status": "draft"}, user="editor"),
    single(
        "single_find_drafts_anonymous",
        "find",
        {"status": "draft"},
        check=differs(200, 400, "drafts_not_allowed"),
    ),
    single("single_find_forged_token", "find", user="forged", check=differs(401, 401, "invalid_token")),
)

DELIBERATE_WRITE_REFUSALS = (
    Case(
        "anonymous_create",
        "create",
        ({"title": f"{TITLE} anonymous"},),
        check=differs(403, 401, "unauthorized", strapi_name="ForbiddenError"),
    ),
    Case(
        "reader_create",
        "create",
        ({"title": f"{TITLE} reader"},),
        user="reader",
        check=differs(403, 403, "forbidden", strapi_name="ForbiddenError"),
    ),
    Case(
        "editor_create_missing_title",
        "create",
        ({"excerpt": "no title"},),
        user="editor",
        check=differs(400, 422, "validation_failed", strapi_name="ValidationError"),
    ),
    Case(
        "editor_create_unknown_field",
        "create",
        ({"title": f"{TITLE} unknown field", "nope": 1},),
        user="editor",
        check=differs(400, 422, "validation_failed", strapi_name="ValidationError"),
    ),
    Case("editor_update_unknown_404", "update", (MISSING_ID, {"excerpt": "x"}), user="editor"),
    Case("editor_delete_unknown", "delete", (MISSING_ID,), user="editor"),  # Strapi: 204, nothing to delete
)


def write_scenario(name: str, user: str, title: str) -> Scenario:
    """Create (published by default, as Strapi does), read back, update, read back, delete."""
    created = Ref(f"{name}.create")
    data = {"title": title, "excerpt": "Created by @strapi/client.", "section": "guide", "featured": True}
    return Scenario(
        name,
        (
            Case(f"{name}.create", "create", (data,), user=user, check=same_document),
            Case(f"{name}.findOne", "findOne", (created,), check=same_document),
            Case(f"{name}.find", "find", ({"filters": {"title": {"$eq": title}}},), check=same_document),
            Case(
                f"{name}.update",
                "update",
                (created, {"excerpt": "Updated by @strapi/client.", "category": Seed("category")}),
                user=user,
                check=same_document,
            ),
            Case(
                f"{name}.findOne_updated", "findOne", (created, {"populate": "category"}), check=same_document
            ),
            Case(f"{name}.delete", "delete", (created,), user=user, check=same_document),
            Case(f"{name}.findOne_deleted", "findOne", (created,), check=same_document),
        ),
    )


def draft_scenario(name: str, user: str, title: str) -> Scenario:
    """Create and update with status=draft: nothing is published."""
    created = Ref(f"{name}.create")
    return Scenario(
        name,
        (
            Case(
                f"{name}.create",
                "create",
                ({"title": title}, {"status": "draft"}),
                user=user,
                check=same_document,
            ),
            Case(f"{name}.findOne", "findOne", (created,), check=same_document),
            Case(
                f"{name}.update",
                "update",
                (created, {"excerpt": "Draft edit."}, {"status": "draft"}),
                user=user,
                check=same_document,
            ),
            Case(
                f"{name}.findOne_draft",
                "findOne",
                (created, {"status": "draft"}),
                user=user,
                check=same_document,
            ),
            Case(f"{name}.delete", "delete", (created,), user=user, check=same_document),
        ),
    )


def api_token_scenario(name: str, title: str) -> Scenario:
    """Writes with an API token: Strapi takes it; bffproxy reads every Bearer as a user's JWT (401)."""
    created = Ref(f"{name}.create")
    refused = differs(201, 401, "invalid_token")
    return Scenario(
        name,
        (
            Case(f"{name}.create", "create", ({"title": title},), user="api-token", check=refused),
            Case(
                f"{name}.update",
                "update",
                (created, {"excerpt": "x"}),
                user="api-token",
                check=differs_after_refused_create(200),
            ),
            Case(
                f"{name}.delete",
                "delete",
                (created,),
                user="api-token",
                check=differs_after_refused_create(204),
            ),
        ),
    )


def differs_after_refused_create(strapi_status: int) -> Check:
    """Strapi answers ``strapi_status``; through bffproxy there is no document to name (create was 401)."""

    def check(strapi: Answer, bff: Answer) -> None:
        assert strapi["status"] == strapi_status, strapi
        assert bff["error"]["name"] == "RefError", bff

    return check


def single_scenario(name: str, user: str) -> Scenario:
    """Update the homepage (published, as Strapi does), delete it, and put it back as it was."""
    return Scenario(
        name,
        (
            single(
                f"{name}.update",
                "update",
                {"tagline": "Edited by @strapi/client."},
                user=user,
                check=same_document,
            ),
            single(f"{name}.find", "find", check=same_document),
            single(f"{name}.delete", "delete", user=user, check=same_document),
            single(f"{name}.find_deleted", "find", check=same_document),
            single(f"{name}.recreate", "update", Seed("homepage"), user=user, check=same_document),
            single(f"{name}.find_recreated", "find", check=same_document),
        ),
    )


SCENARIOS = (
    write_scenario("editor_write", "editor", f"{TITLE} editor"),
    draft_scenario("editor_draft", "editor", f"{TITLE} draft"),
    api_token_scenario("api_token_write", f"{TITLE} api token"),
    single_scenario("single_write", "editor"),
)
FIRST = (*READS, *SINGLE_READS, *DELIBERATE_WRITE_REFUSALS)  # run back to back per case
ALL_CASES = (*FIRST, *(case for s in SCENARIOS for case in s.cases))


# -- running the client ---------------------------------------------------------------------------


@dataclass
class Targets:
    """What the runner needs to know about the two targets and the callers."""

    strapi: Strapi
    bff: Gunicorn
    tokens: dict[str, str]
    seed: dict[str, Any]

    def base_url(self, target: str) -> str:
        return f"{self.strapi.url if target == 'strapi' else self.bff.url}/api"

    def resolve(self, value: Any, target: str) -> Any:
        """The JSON the runner gets for an argument: seeds filled in, refs named per target."""
        if isinstance(value, Seed):
            return self.seed[value.name]
        if isinstance(value, Ref):
            return {"$ref": f"{target}/{value.case}", "path": value.path}
        if isinstance(value, dict):
            return {key: self.resolve(item, target) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.resolve(item, target) for item in value]
        return value

    def job(self, case: Case, target: str) -> dict[str, Any]:
        return {
            "id": f"{target}/{case.name}",
            "baseURL": self.base_url(target),
            "auth": self.tokens.get(case.user) if case.user else None,
            "kind": case.kind,
            "resource": case.resource,
            "method": case.method,
            "args": self.resolve(case.args, target),
        }

    def jobs(self) -> list[dict[str, Any]]:
        """Reads back to back per case, then each scenario against Strapi, then against bffproxy."""
        jobs = [self.job(case, target) for case in FIRST for target in ("strapi", "bff")]
        for scenario in SCENARIOS:
            jobs += [self.job(case, target) for target in ("strapi", "bff") for case in scenario.cases]
        return jobs


def install_client() -> Path:
    """Install @strapi/client as `make install` does (a no-op once installed); where it is."""
    if not shutil.which("node"):
        pytest.fail("node is not installed: the end-to-end suite needs Node.js 20")
    modules = client_dir()
    subprocess.run(
        ["bash", str(INSTALL)],
        env={**os.environ, "STRAPI_CLIENT_DIR": str(modules)},
        check=True,
        capture_output=True,
        timeout=300,
    )
    return modules


def run_client(jobs: list[dict[str, Any]]) -> dict[str, Answer]:
    """All jobs in one node process; the answers by job id."""
    modules = install_client()
    result = subprocess.run(
        ["node", str(RUNNER)],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "STRAPI_CLIENT_DIR": str(modules)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return {answer["id"]: answer for answer in json.loads(result.stdout)}


def login(strapi: Strapi, username: str) -> str:
    """A Strapi user's JWT, from Strapi itself (the same token goes to both targets)."""
    answer = requests.post(
        f"{strapi.url}/api/auth/local", json={"identifier": username, "password": USERS[username]}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["jwt"])


def read_seed(strapi: Strapi) -> dict[str, Any]:
    """Seeded documents the cases name: a published article, a draft-only one, a category, the homepage."""
    token = strapi.api_token
    published = strapi.get("api/articles", **{"sort": "title:asc", "pagination[pageSize]": "1"}).json()[
        "data"
    ][0]
    drafts = strapi.get("api/articles", token=token, status="draft", **{"pagination[pageSize]": "100"}).json()
    live = {
        doc["documentId"]
        for doc in strapi.get("api/articles", **{"pagination[pageSize]": "100"}).json()["data"]
    }
    draft_only = next(doc for doc in drafts["data"] if doc["documentId"] not in live)
    category = strapi.get("api/categories", **{"sort": "name:asc"}).json()["data"][0]
    seed = {
        "published": published["documentId"],
        "published_title": published["title"],
        "draft_only": draft_only["documentId"],
        "category": category["documentId"],
    }
    homepage = strapi.get("api/homepage").json()["data"]
    seed["homepage"] = {key: homepage[key] for key in ("title", "tagline", "body")}
    return seed


def undo_writes(strapi: Strapi, seed: dict[str, Any]) -> None:
    """In Strapi directly: delete every article this module may have written, restore the homepage."""
    auth = {"Authorization": f"Bearer {strapi.api_token}"}
    found = strapi.get(
        "api/articles", token=strapi.api_token, status="draft", **{"filters[title][$startsWith]": TITLE}
    )
    for doc in found.json()["data"]:
        requests.delete(f"{strapi.url}/api/articles/{doc['documentId']}", headers=auth, timeout=10)
    if strapi.get("api/homepage").status_code == 404:
        requests.put(f"{strapi.url}/api/homepage", json={"data": seed["homepage"]}, headers=auth, timeout=10)


@pytest.fixture(scope="module")
def client_bff(
    strapi_server: Strapi, webhook_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    """bffproxy (2 workers) for the whole module, on the port Strapi's webhook targets."""
    if not http_ok(f"{strapi_server.url}/_health"):
        strapi_server.start()
    cache = tmp_path_factory.mktemp("client-bff")
    server = Gunicorn(
        webhook_port, bff_env(strapi_server, cache, **SETTINGS), log_path=cache / "gunicorn.log"
    )
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def answers(strapi_server: Strapi, client_bff: Gunicorn) -> Iterator[dict[str, Answer]]:
    """Every case's answer from both targets, from one run of the client."""
    tokens = {
        "reader": login(strapi_server, "reader"),
        "editor": login(strapi_server, "editor"),
        "api-token": strapi_server.api_token,
        "forged": FORGED,
    }
    seed = read_seed(strapi_server)
    try:
        yield run_client(Targets(strapi_server, client_bff, tokens, seed).jobs())
    finally:
        undo_writes(strapi_server, seed)


def params(cases: tuple[Case, ...]) -> list[Any]:
    return [pytest.param(case, id=case.name, marks=case.marks) for case in cases]


@pytest.mark.parametrize("case", params(ALL_CASES))
def test_same_call_same_answer(case: Case, answers: dict[str, Answer]) -> None:
    strapi, bff = answers[f"strapi/{case.name}"], answers[f"bff/{case.name}"]
    (case.check or same)(strapi, bff)
