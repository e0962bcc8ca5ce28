"""deploy/: the env example lists every setting; nginx and systemd accept the shipped files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bffproxy.settings import DEFAULTS, ENV_PREFIX

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SITE_CONF = DEPLOY / "nginx" / "bffproxy.conf"
UNIT = DEPLOY / "systemd" / "bffproxy.service"
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


def render_site_conf(upstream_port: int, listen_port: int, log_dir: Path, source: Path = SITE_CONF) -> str:
    """The shipped nginx site, with the test's ports and log paths (each replaced exactly once)."""
    text = source.read_text()
    replacements = {
        "server 127.0.0.1:8080;": f"server 127.0.0.1:{upstream_port};",
        "listen 80;": f"listen 127.0.0.1:{listen_port};",
        "listen [::]:80;": "",
        "/var/log/nginx/bffproxy.access.log": str(log_dir / "access.log"),
        "/var/log/nginx/bffproxy.error.log": str(log_dir / "error.log"),
        "/var/cache/nginx/bffproxy-media": str(log_dir / "media-cache"),
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{source.name} should contain {old!r} exactly once"
        text = text.replace(old, new)
    return text


def write_nginx_conf(prefix: Path, upstream_port: int, listen_port: int) -> Path:
    """A minimal nginx.conf in ``prefix`` that includes the rendered site inside ``http {}``."""
    site = prefix / "bffproxy.conf"
    site.write_text(render_site_conf(upstream_port, listen_port, prefix))
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp_paths = "\n".join(f"    {kind}_temp_path {prefix / kind};" for kind in kinds)
    # As root, nginx's workers would run as `nobody`, which cannot use the test's private temp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes 1;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n{temp_paths}\n    include {site};\n}}\n"
    )
    return conf


def nginx_command(prefix: Path, conf: Path, *extra: str) -> list[str]:
    """nginx in the foreground, with its pid and error log in ``prefix``."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    globals_ = f"daemon off; pid {prefix / 'nginx.pid'}; error_log {prefix / 'nginx-error.log'};"
    return [binary, "-p", str(prefix), "-c", str(conf), "-g", globals_, *extra]


def nginx_available() -> bool:
    """True when the nginx binary is installed (scripts/system-deps.sh installs it)."""
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


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
def test_nginx_accepts_the_shipped_conf(tmp_path: Path) -> None:
    conf = write_nginx_conf(tmp_path, upstream_port=8080, listen_port=8081)
    result = subprocess.run(nginx_command(tmp_path, conf, "-t"), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (systemd is not on this machine)")
    # verify checks that ExecStart's binary exists: point it at one that does, keep the rest.
    unit = tmp_path / "bffproxy.service"
    text = UNIT.read_text()
    assert "ExecStart=/opt/bffproxy/.venv/bin/gunicorn " in text
    unit.write_text(text.replace("/opt/bffproxy/.venv/bin/gunicorn", shutil.which("true") or "/bin/true"))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    if "Failed to" in result.stderr and ("bus" in result.stderr.lower() or "manager" in result.stderr):
        pytest.skip(f"systemd-analyze cannot run here (no systemd manager): {result.stderr.strip()}")
    problems = [line for line in result.stderr.splitlines() if "bffproxy.service" in line]
    assert result.returncode == 0 and not problems, result.stderr


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
