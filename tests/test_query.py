"""qs-compatible parsing of Strapi query strings (cases from ljharb/qs test/parse.js that decide names).

``tests/e2e/test_query_qs_e2e.py`` checks the same parser against the real qs inside Strapi's
node_modules with generated inputs; these cases pin the rules down without Node.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bffproxy.query import (
    PARAMETER_LIMIT,
    InvalidParameter,
    Param,
    canonical,
    encode,
    parse_query,
    qs_decode,
    refuse_failing_filters,
    refuse_unlisted,
    split_pairs,
    top_level_name,
)


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("status", "status"),
        ("status[0]", "status"),
        ("status[]", "status"),
        ("[status]", "status"),  # qs reads a leading bracket group as the top-level key
        ("[status][x]", "status"),
        ("[[status]]", "[status]"),  # balanced groups (qs 6.15): the content keeps its brackets
        ("[status", "[status"),  # unterminated: one literal segment
        ("[]", ""),
        ("[0]", "0"),
        ("a[b]c", "a"),
        ("filters[$and][0][title][$eq]", "filters"),
        ("status.x", "status.x"),  # allowDots is off in Strapi
        ("?status", "?status"),  # ignoreQueryPrefix is off: a second "?" is part of the name
    ],
)
def test_top_level_name_as_qs_reads_it(key: str, name: str) -> None:
    assert top_level_name(key) == name


@pytest.mark.parametrize("key", ["", "__proto__", "hasOwnProperty", "constructor[x]", "[toString]"])
def test_keys_qs_drops_have_no_name(key: str) -> None:
    assert top_level_name(key) is None


@pytest.mark.parametrize(
    ("query", "pairs"),
    [
        ("a=b", [("a", "b")]),
        ("a", [("a", None)]),  # strictNullHandling: no "=" is null, not ""
        ("a=", [("a", "")]),
        ("a=b=c", [("a", "b=c")]),
        ("a[>=]=25", [("a[>=]", "25")]),  # the key ends at "]=", not at the first "="
        ("a[<=>]==23", [("a[<=>]", "=23")]),
        ("a%5B%3D%5D=1", [("a[=]", "1")]),  # %5B/%5D become brackets before the split
        ("%5Bstatus%5D=draft", [("[status]", "draft")]),
        ("a+b=c+d", [("a b", "c d")]),
        ("a=%E2%82%AC", [("a", "€")]),
        ("a=%FF", [("a", "%FF")]),  # invalid UTF-8: decodeURIComponent throws, qs keeps the text
        ("a=%41%zz", [("a", "%41%zz")]),  # one bad escape leaves the whole string undecoded
        ("a=%ED%A0%80", [("a", "%ED%A0%80")]),  # an encoded surrogate is invalid for JS too
        ("&&a=1&&=2&", [("a", "1")]),  # empty parts and empty keys are skipped
        ("a=1;b=2", [("a", "1;b=2")]),  # only "&" delimits
    ],
)
def test_split_pairs_like_qs(query: str, pairs: list[tuple[str, str | None]]) -> None:
    assert split_pairs(query) == pairs


@pytest.mark.parametrize("query", ["a=\x80", "a=b c", "a=é", "a=\x00", "a=b\n"])
def test_raw_query_must_be_percent_encoded_ascii(query: str) -> None:
    with pytest.raises(InvalidParameter):
        split_pairs(query)


def test_prototype_keys_are_refused_not_silently_dropped() -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse_query("filters[a]=1&__proto__[status]=draft")
    assert caught.value.details == {"param": "__proto__[status]"}


def test_parameter_limit() -> None:
    assert len(parse_query("&".join(["sort=a"] * PARAMETER_LIMIT))) == PARAMETER_LIMIT
    with pytest.raises(InvalidParameter):
        parse_query("&".join(["sort=a"] * (PARAMETER_LIMIT + 1)))


def test_refuse_unlisted_names_the_raw_key() -> None:
    with pytest.raises(InvalidParameter) as caught:
        refuse_unlisted(parse_query("sort=a&[foo]=1"), frozenset({"sort"}))
    assert caught.value.details["param"] == "[foo]"


def test_canonical_groups_names_and_keeps_each_names_order() -> None:
    params = canonical(parse_query("sort=b&locale=en&sort=a&filters[x]=1&sort[2]=c"))
    assert [p.key for p in params] == ["filters[x]", "locale", "sort", "sort", "sort[2]"]
    assert [p.value for p in params if p.name == "sort"] == ["b", "a", "c"]


def test_encode_escapes_everything_qs_could_read_differently() -> None:
    params = parse_query("a%5B%3D%5D=1&b=%26c%3Dd&c=x+y&d&e=%2B")
    assert encode(params) == "a[%3D]=1&b=%26c%3Dd&c=x%20y&d&e=%2B"


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@given(key=_text.filter(bool), value=st.none() | _text)
def test_an_encoded_pair_reads_back_as_itself(key: str, value: str | None) -> None:
    assert split_pairs(Param(key, "", value).encoded()) == [(key, value)]


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40))
def test_decoding_never_raises_and_is_idempotent_through_encode(raw: str) -> None:
    decoded = qs_decode(raw)
    assert qs_decode(Param(decoded, "", None).encoded()) == decoded


# Shapes Strapi 5.54 answers with a 500 (found by fuzzing the OpenAPI document; tests/e2e/
# test_openapi_fuzz_e2e.py shows the real Strapi failing on each), and their working neighbours.
FAILING_FILTERS = [
    "filters[$or]=x",
    "filters[$and][0]=x",
    "filters[$not]=",
    "filters[$not][0]=x",
    "filters[$or][0][$or]=x",
    "filters[$or][0][$not]=x",
    "populate[category][filters][$or]=x",
    "filters[title][$between][0]=a",
    "filters[id][$between]=1",
    "filters[title][$between][0]=a&filters[title][$between][1]=b&filters[title][$between][2]=c",
    "filters[$or][0][id][$between][0]=1&filters[$or][0][id][$between][1]=2&filters[$or][1][id][$between][0]=1",
]
WORKING_FILTERS = [
    "filters[$or][0][title]=x",
    "filters[$or][0][$and][0][title][$eq]=x",
    "filters[$not][title]=x",
    "filters[title][$not][$eq]=x",
    "filters[category][$or][0][name][$eq]=x",
    "filters[title][$between][0]=a&filters[title][$between][1]=b",
    "filters[title][$between]=a&filters[title][$between]=b",
    "filters[title][$between][]=a&filters[title][$between][]=b",
    "populate[category][filters][name][$eq]=x",
    "populate=*&sort=title",
]


@pytest.mark.parametrize("query", FAILING_FILTERS)
def test_filter_shapes_strapi_fails_on_are_refused(query: str) -> None:
    with pytest.raises(InvalidParameter) as refused:
        refuse_failing_filters(parse_query(query))
    assert refused.value.details["param"].startswith(("filters", "populate"))


@pytest.mark.parametrize("query", WORKING_FILTERS)
def test_filter_shapes_strapi_answers_pass(query: str) -> None:
    refuse_failing_filters(parse_query(query))
