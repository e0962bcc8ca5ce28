"""deploy/: the env example lists every setting; nginx and systemd accept the shipped files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bffproxy.settings import DEFAULTS, ENV_PREFIX
from scripts.local_nginx import (
    MICROCACHE_CONF,
    MICROCACHE_INCLUDE,
    SITE_CONF,
    nginx_available,
    nginx_command,
    write_nginx_conf,
)

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "bffproxy.service"
EVENTS_UNIT = DEPLOY / "systemd" / "bffproxy-events.service"
ENV_EXAMPLE = DEPLOY / "bffproxy.env.example"
TENANTS_EXAMPLE = DEPLOY / "tenants.toml.example"

# How bffproxy's modules read a setting: settings.as_*(config, "KEY"), config.setdefault("KEY"),
# config.get("KEY") and env_name("KEY") in messages.
_SETTING_PATTERNS = (
    r'\bas_\w+\(\s*(?:app\.)?config,\s*"([A-Z][A-Z0-9_]+)"',
    r'config\.setdefault\(\s*"([A-Z][A-Z0-9_]+)"',
    r'config\.get\(\s*"([A-Z][A-Z0-9_]+)"',
    r'\benv_name\(\s*["\']([A-Z][A-Z0-9_]+)["\']\s*\)',
)


def bffproxy_settings() -> set[str]:
    """Every setting bffproxy reads, found in its source (so a new one cannot be forgotten here)."""
    found = set(DEFAULTS)
    for path in (ROOT / "bffproxy").glob("*.py"):
        text = path.read_text()
        for pattern in _SETTING_PATTERNS:
            found.update(re.findall(pattern, text))
    return found


def test_env_example_lists_every_setting() -> None:
    text = ENV_EXAMPLE.read_text()
    missing = sorted(
        key for key in bffproxy_settings() if not re.search(rf"^#?\s*{ENV_PREFIX}_{key}(=|__)", text, re.M)
    )
    assert not missing, f"add to {ENV_EXAMPLE.name}: {', '.join(f'{ENV_PREFIX}_{k}' for k in missing)}"


def test_readme_configuration_table_lists_every_setting() -> None:
    text = (ROOT / "README.md").read_text()
    missing = sorted(key for key in bffproxy_settings() if f"`{ENV_PREFIX}_{key}" not in text)
    assert not missing, f"add to README's configuration table: {', '.join(missing)}"


def test_env_example_trusts_nginx_and_uses_the_systemd_cache_dir() -> None:
    lines = set(ENV_EXAMPLE.read_text().splitlines())
    assert f"{ENV_PREFIX}_TRUSTED_PROXIES=1" in lines
    assert f"{ENV_PREFIX}_CACHE_DIR=/var/cache/bffproxy" in lines
    assert "CacheDirectory=bffproxy" in UNIT.read_text()


def test_env_example_is_valid_env_file_syntax() -> None:
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            assert re.match(r"^[A-Z][A-Z0-9_]*(__\w+)?=\S*$", line), f"line {number}: {line!r}"


def test_nginx_conf_limits_match_bffproxy_defaults() -> None:
    text = SITE_CONF.read_text()
    assert DEFAULTS["MAX_CONTENT_LENGTH"] == 1024 * 1024
    assert "client_max_body_size 1m;" in text
    # bffproxy is the cache; nginx caches only the media files bffproxy streams without keeping them.
    cached = re.findall(r"location ([^{]*)\{[^}]*^\s*proxy_cache\s", text, re.M)
    assert cached == ["/uploads/ "], cached


@pytest.mark.skipif(not nginx_available(), reason="nginx is not installed (make system-deps)")
@pytest.mark.parametrize("microcache", [False, True], ids=["site", "site+microcache"])
def test_nginx_accepts_the_shipped_conf(tmp_path: Path, microcache: bool) -> None:
    conf = write_nginx_conf(tmp_path, upstream_port=8080, listen_port=8081, microcache=microcache)
    result = subprocess.run(nginx_command(tmp_path, conf, "-t"), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def _analyzable(tmp_path: Path, source: Path) -> tuple[str, Path]:
    """systemd-analyze and a copy of ``source`` whose ExecStart binary exists (verify checks it)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (systemd is not on this machine)")
    unit = tmp_path / source.name
    text = source.read_text()
    assert "ExecStart=/opt/bffproxy/.venv/bin/gunicorn " in text
    unit.write_text(text.replace("/opt/bffproxy/.venv/bin/gunicorn", shutil.which("true") or "/bin/true"))
    return analyze, unit


@pytest.mark.parametrize("source", [UNIT, EVENTS_UNIT], ids=["api", "events"])
def test_systemd_unit_verifies(tmp_path: Path, source: Path) -> None:
    analyze, unit = _analyzable(tmp_path, source)
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    if "Failed to" in result.stderr and ("bus" in result.stderr.lower() or "manager" in result.stderr):
        pytest.skip(f"systemd-analyze cannot run here (no systemd manager): {result.stderr.strip()}")
    problems = [line for line in result.stderr.splitlines() if source.name in line]
    assert result.returncode == 0 and not problems, result.stderr


# The most `systemd-analyze security` may score a shipped unit (0 = locked down, 10 = exposed; up
# to 2.0 is "OK"). Both score 1.1 with systemd 252: what is left is the network (it is a network
# service) and the root directory.
MAX_EXPOSURE = 2.0


@pytest.mark.parametrize("source", [UNIT, EVENTS_UNIT], ids=["api", "events"])
def test_systemd_security_exposure_is_ok(tmp_path: Path, source: Path) -> None:
    analyze, unit = _analyzable(tmp_path, source)
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in result.stderr:
        pytest.skip(f"this systemd-analyze cannot score a unit file offline (systemd < 250): {result.stderr}")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    assert match.group(2) == "OK"


def test_the_units_write_only_their_cache_and_runtime_directories() -> None:
    """ProtectSystem=strict: nothing else is writable, so no ReadWritePaths may widen it."""
    for source, runtime in ((UNIT, "bffproxy"), (EVENTS_UNIT, "bffproxy-events")):
        lines = source.read_text().splitlines()
        assert "ProtectSystem=strict" in lines and "CacheDirectory=bffproxy" in lines
        assert f"RuntimeDirectory={runtime}" in lines, source.name
        assert not [line for line in lines if line.startswith(("ReadWritePaths=", "ProtectSystem=false"))]


def test_the_events_unit_runs_the_events_app_like_the_api_unit_runs_the_api() -> None:
    """Same user, settings, cache and hardening; its own gunicorn config, app, file limit and /run dir."""
    api, events = UNIT.read_text().splitlines(), EVENTS_UNIT.read_text().splitlines()
    directives = {line.split("=", 1)[0] for line in api if "=" in line and not line.startswith("#")}
    # RuntimeDirectory differs on purpose: systemd removes it when its unit stops.
    own = ("Description", "ExecStart", "ExecReload", "After", "RuntimeDirectory")
    kept = {d for d in directives if d not in own}
    for name in kept:
        lines = [[line for line in unit if line.startswith(f"{name}=")] for unit in (api, events)]
        assert lines[0] == lines[1], name
    exec_start = next(line for line in events if line.startswith("ExecStart="))
    assert exec_start.endswith("-c /opt/bffproxy/gunicorn.events.conf.py wsgi:events_app")
    for unit, conf, app in (
        (api, "gunicorn.conf.py", "wsgi:app"),
        (events, "gunicorn.events.conf.py", "wsgi:events_app"),
    ):
        # A reload checks the unit's own gunicorn file and app before the HUP (the HUP is the last step).
        reload = [line for line in unit if line.startswith("ExecReload=")]
        assert reload[-1] == "ExecReload=/bin/kill -HUP $MAINPID", reload
        assert reload[0].endswith(f"-c /opt/bffproxy/{conf} --check-config {app}"), reload
    assert "LimitNOFILE=65536" in events


def test_the_site_sends_every_event_route_to_the_events_app_unbuffered() -> None:
    text = SITE_CONF.read_text()
    block = text[text.index("location ~ /api/events(/ws|/ticket)?$ {") :]
    block = block[: block.index("}")]
    for line in ("proxy_pass http://bffproxy_events;", "proxy_buffering off;", "gzip off;"):
        assert line in block
    assert "proxy_set_header Upgrade $http_upgrade;" in block and "$bff_connection" in block
    read_timeout = int(block.split("proxy_read_timeout ")[1].split("s;")[0])
    assert read_timeout > 15 * 2  # twice the default heartbeat: a quiet stream is never cut
    for header in ("Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-ID"):
        assert f"proxy_set_header {header} " in block  # none inherited once one is set here


def test_env_example_with_every_example_enabled_is_a_valid_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bffproxy import create_app

    for name in [name for name in os.environ if name.startswith(f"{ENV_PREFIX}_")]:
        monkeypatch.delenv(name)
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(rf"^#?({ENV_PREFIX}_\w+)=(.*)$", line)
        if match:
            monkeypatch.setenv(match.group(1), match.group(2).strip('"'))
    monkeypatch.setenv(f"{ENV_PREFIX}_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(f"{ENV_PREFIX}_ENV_FILE", str(tmp_path / "absent.env"))
    monkeypatch.setenv(f"{ENV_PREFIX}_TENANTS_FILE", str(TENANTS_EXAMPLE))  # the example tenants too
    for tenant in ("ACME", "GLOBEX"):
        monkeypatch.setenv(f"{tenant}_STRAPI_API_TOKEN", "token")
        monkeypatch.setenv(f"{tenant}_STRAPI_JWT_SECRET", f"{tenant.lower()}-jwt-secret-" + "s" * 32)
        monkeypatch.setenv(f"{tenant}_WEBHOOK_SECRET", f"{tenant.lower()}-webhook-secret")
    app = create_app()
    assert app.config["TRUSTED_PROXIES"] == 1
    assert [t.name for t in app.extensions["bffproxy.tenants"]] == ["acme", "globex"]


def test_private_locations_deny_by_default_and_come_before_every_other_regex_location() -> None:
    """nginx tries regex locations in order: a private path must never reach the events location first."""
    text = SITE_CONF.read_text()
    regexes = re.findall(r"^\s*location ~ (\S+) \{", text, re.M)
    private = [r for r in regexes if r.endswith(("/webhooks/", "/metrics$", "/admin/"))]
    assert len(private) == 3 and regexes[:3] == private, regexes
    for pattern in private:
        block = text[text.index(f"location ~ {pattern} {{") :]
        block = block[: block.index("}")]
        assert block.rstrip().splitlines()[-2:] == [
            "        deny all;",
            "        proxy_pass http://bffproxy;",
        ]
        assert [
            line.strip()
            for line in block.splitlines()
            if "allow " in line and not line.strip().startswith("#")
        ] == [
            "allow 127.0.0.1;",
            "allow ::1;",
        ]
    assert "error_page 403 @forbidden;" in text


def test_the_microcache_keeps_only_what_bffproxy_marks_and_never_serves_stale() -> None:
    text = MICROCACHE_CONF.read_text()
    directives = [
        line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "proxy_ignore_headers Cache-Control Expires;" in directives  # X-Accel-Expires alone decides
    assert not [d for d in directives if d.startswith(("proxy_cache_valid", "proxy_cache_use_stale"))]
    assert "proxy_cache_bypass $http_authorization;" in directives
    assert "proxy_no_cache $http_authorization;" in directives
    assert "proxy_cache_methods GET HEAD;" in directives
    assert "proxy_hide_header X-Request-ID;" in directives  # a kept answer never carries another's id
    assert SITE_CONF.read_text().count(MICROCACHE_INCLUDE) == 1  # off unless the operator turns it on
