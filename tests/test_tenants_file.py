"""The tenants file: shape, allow-listed keys, secrets from the environment, unique hosts and prefixes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bffproxy.settings import ConfigError
from bffproxy.tenants_file import read_tenants_file

TWO_TENANTS = """
default_tenant = "acme"

[tenants.acme]
hosts = ["acme.example.com", "*.acme.example.com"]
strapi_url = "http://127.0.0.1:1337"
strapi_api_token_env = "ACME_TOKEN"
collections = ["articles", "categories"]
cache_ttl = 60
cache_ttls = { articles = 30 }
relations = { articles = ["categories"] }

[tenants.acme.policies]
articles = "read=public,drafts=editor,write=editor"

[tenants.acme.cors]
origins = ["https://app.acme.example.com", "https://*.preview.acme.example.com"]
allow_credentials = true
max_age = 600

[tenants.beta]
path_prefix = "/t/beta"
strapi_url = "http://127.0.0.1:1338"
collections = ["articles"]
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "tenants.toml"
    path.write_text(text)
    return str(path)


def error_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        read_tenants_file(write(tmp_path, text), environ if environ is not None else {})
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"BFFPROXY_TENANTS_FILE {tmp_path}/tenants.toml")
    return message


def test_two_tenants_are_read_with_their_settings_matches_and_cors(tmp_path: Path) -> None:
    read = read_tenants_file(write(tmp_path, TWO_TENANTS), {"ACME_TOKEN": "acme-secret"})
    assert read.default == "acme"
    acme, beta = read.tenants
    assert acme.name == "acme" and acme.hosts == ("acme.example.com", "*.acme.example.com")
    assert acme.settings == {
        "STRAPI_URL": "http://127.0.0.1:1337",
        "STRAPI_API_TOKEN": "acme-secret",
        "COLLECTIONS": "articles,categories",
        "CACHE_TTL": 60,
        "CACHE_TTLS": {"articles": "30"},
        "RELATIONS": {"articles": "categories"},
        "POLICIES": {"articles": "read=public,drafts=editor,write=editor"},
    }
    assert acme.cors is not None and acme.cors.allow_credentials and acme.cors.max_age == 600
    exact, pattern = acme.cors.origins
    assert exact == "https://app.acme.example.com"
    assert isinstance(pattern, re.Pattern)
    assert pattern.match("https://pr-12.preview.acme.example.com")
    for other in (
        "https://preview.acme.example.com",  # the wildcard needs a label
        "https://evil.com/.preview.acme.example.com",
        "https://x.preview.acme.example.com.evil.com",
        "http://x.preview.acme.example.com",
        "https://x.preview.acme.example.com:444",
    ):
        assert not pattern.match(other), other
    assert (beta.path_prefix, beta.hosts, beta.cors) == ("/t/beta", (), None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[tenants.a]\nstrapi_urll = 'http://x'", "tenant 'a', key 'strapi_urll': unknown key"),
        ("tenant = 1\n[tenants.a]", "key 'tenant': unknown top-level key"),
        ("default_tenant = 'zz'\n[tenants.a]", "key 'default_tenant': names no tenant of this file: 'zz'"),
        ("x = ", "is not valid TOML"),
        ("", "needs at least one [tenants.<name>] table"),
        ("[tenants.Acme]", "tenant 'Acme': a tenant name is lower-case"),
        ("[tenants.'a:b']", "tenant 'a:b': a tenant name is lower-case"),
        ("[tenants.a]\nhosts = ['a.com:8080']", "'a.com:8080' is not a host name"),
        ("[tenants.a]\nhosts = ['*.*.a.com']", "is not a host name"),
        ("[tenants.a]\nhosts = 'a.com'", "key 'hosts': must be a list of host names"),
        (
            "[tenants.a]\nhosts = ['a.com']\n[tenants.b]\nhosts = ['A.com.']",
            "tenant 'b', key 'hosts': 'a.com' is also a host of tenant 'a'",
        ),
        (
            "[tenants.a]\nhosts = ['*.example.com']\n[tenants.b]\nhosts = ['x.example.com']",
            "tenant 'b', key 'hosts': 'x.example.com' is also matched by '*.example.com' of tenant 'a'",
        ),
        (
            "[tenants.a]\nhosts = ['*.example.com']\n[tenants.b]\nhosts = ['*.x.example.com']",
            "'*.x.example.com' is also matched by '*.example.com'",
        ),
        ("[tenants.a]\npath_prefix = 't/a'", "key 'path_prefix': must start with '/'"),
        ("[tenants.a]\npath_prefix = '/t/a/'", "must start with '/' and not end with one"),
        ("[tenants.a]\npath_prefix = '/api'", "would hide bffproxy's own /api routes"),
        ("[tenants.a]\npath_prefix = '/t/../api'", "would hide"),
        ("[tenants.a]\npath_prefix = '/t/a b'", "has a segment that is not plain text"),
        (
            "[tenants.a]\npath_prefix = '/t'\n[tenants.b]\npath_prefix = '/t/b'",
            "tenant 'b', key 'path_prefix': '/t/b' overlaps '/t' of tenant 'a'",
        ),
        (
            "[tenants.a]\nstrapi_api_token_env = 'NOPE'",
            "key 'strapi_api_token_env': the environment variable NOPE is not set",
        ),
        ("[tenants.a]\nstrapi_api_token_env = 'A B'", "must name an environment variable"),
        (
            "[tenants.a]\nstrapi_api_token = 'x'\nstrapi_api_token_env = 'T'",
            "give either strapi_api_token or",
        ),
        ("[tenants.a]\ncollections = [1, 2]", "key 'collections': must be a string, a number"),
        ("[tenants.a.policies]\narticles = { read = 'public' }", "key 'policies': table values must be"),
        ("[tenants.a.cors]\norigin = ['https://a.com']", "key 'cors.origin': unknown key"),
        ("[tenants.a.cors]\norigins = []", "key 'cors.origins': must be a non-empty list"),
        ("[tenants.a.cors]\norigins = ['https://a.com/']", "'https://a.com/' is not an origin"),
        ("[tenants.a.cors]\norigins = ['https://a.com', 'https://x.*.a.com']", "is not an origin"),
        ("[tenants.a.cors]\norigins = ['*']\nallow_credentials = true", "cannot be true with the origin '*'"),
        ("[tenants.a.cors]\norigins = ['*']\nmax_age = -1", "key 'cors.max_age': must be a whole number"),
        ("[tenants.a.cors]\norigins = ['*']\nallow_headers = ['X Y']", "key 'cors.allow_headers'"),
    ],
)
def test_each_fault_is_one_line_naming_the_file_tenant_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert expected in error_of(tmp_path, text)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"BFFPROXY_TENANTS_FILE .*/absent.toml: cannot be read: No such file"
    ):
        read_tenants_file(str(tmp_path / "absent.toml"), {})


def test_an_exact_host_under_another_tenants_wildcard_base_is_not_an_overlap(tmp_path: Path) -> None:
    # '*.acme.com' matches subdomains only, as in nginx's server_name: 'acme.com' itself is free.
    text = "[tenants.a]\nhosts = ['*.acme.com']\n[tenants.b]\nhosts = ['acme.com']"
    assert [t.hosts for t in read_tenants_file(write(tmp_path, text), {}).tenants] == [
        ("*.acme.com",),
        ("acme.com",),
    ]
