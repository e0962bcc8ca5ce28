"""The shipped nginx site (deploy/nginx/bffproxy.conf) run as an ordinary user on loopback ports.

``make run`` (scripts/run-local.sh) and the tests (tests/test_deploy.py, tests/e2e/) use it, so the
site they exercise is the one deploy/ ships, with only ports and paths replaced:

    python -m scripts.local_nginx PREFIX LISTEN_PORT API_PORT [EVENTS_PORT]   # runs nginx in the foreground
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE_CONF = ROOT / "deploy" / "nginx" / "bffproxy.conf"
MICROCACHE_CONF = ROOT / "deploy" / "nginx" / "bffproxy-microcache.conf"
MICROCACHE_INCLUDE = "# include /etc/nginx/snippets/bffproxy-microcache.conf;"


def render_site_conf(
    upstream_port: int,
    listen_port: int,
    log_dir: Path,
    source: Path = SITE_CONF,
    events_port: int | None = None,
    microcache: bool = False,
) -> str:
    """The site with these ports and log paths, each replaced exactly once (ValueError otherwise).

    Without ``events_port`` the event streams go to the API app too (it serves them, with few slots);
    ``microcache`` turns on the optional micro-cache's include line (deploy/nginx/bffproxy-microcache.conf).
    """
    text = source.read_text()
    replacements = {
        "server 127.0.0.1:8080;": f"server 127.0.0.1:{upstream_port};",
        "server 127.0.0.1:8081;": f"server 127.0.0.1:{events_port or upstream_port};",
        "listen 80;": f"listen 127.0.0.1:{listen_port};",
        "listen [::]:80;": "",
        "/var/log/nginx/bffproxy.access.log": str(log_dir / "access.log"),
        "/var/log/nginx/bffproxy.error.log": str(log_dir / "error.log"),
        "/var/cache/nginx/bffproxy-media": str(log_dir / "media-cache"),
        "/var/cache/nginx/bffproxy-micro": str(log_dir / "micro-cache"),
        MICROCACHE_INCLUDE: f"include {MICROCACHE_CONF};" if microcache else MICROCACHE_INCLUDE,
    }
    for old, new in replacements.items():
        if text.count(old) != 1:
            raise ValueError(f"{source.name} should contain {old!r} exactly once")
        text = text.replace(old, new)
    return text


def write_nginx_conf(
    prefix: Path,
    upstream_port: int,
    listen_port: int,
    events_port: int | None = None,
    microcache: bool = False,
    workers: str = "1",
) -> Path:
    """A minimal nginx.conf in ``prefix`` that includes the rendered site inside ``http {}``.

    ``workers``: worker_processes (one for tests; ``auto``, one per core, as deployed, for benchmarks).
    """
    site = prefix / "bffproxy.conf"
    site.write_text(
        render_site_conf(upstream_port, listen_port, prefix, events_port=events_port, microcache=microcache)
    )
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp_paths = "\n".join(f"    {kind}_temp_path {prefix / kind};" for kind in kinds)
    # As root, nginx's workers would run as `nobody`, which cannot use private temp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes {workers};\nevents {{ worker_connections 1024; }}\n"
        # sendfile and tcp_nopush as in Debian's /etc/nginx/nginx.conf, which includes the site.
        f"http {{\n{temp_paths}\n    sendfile on;\n    tcp_nopush on;\n    include {site};\n}}\n"
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


@contextmanager
def running_nginx(
    prefix: Path,
    upstream_port: int,
    listen_port: int,
    events_port: int | None = None,
    microcache: bool = False,
    workers: str = "1",
) -> Iterator[subprocess.Popen[bytes]]:
    """The shipped site served by nginx from ``prefix`` until the block ends (stopped, then killed)."""
    prefix.mkdir(parents=True, exist_ok=True)
    conf = write_nginx_conf(prefix, upstream_port, listen_port, events_port, microcache, workers)
    with open(prefix / "nginx-stderr.log", "wb") as stderr:
        process = subprocess.Popen(
            nginx_command(prefix, conf), stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
    try:
        _wait_listening(process, listen_port)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)  # fast shutdown of master and workers
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_listening(process: subprocess.Popen[bytes], port: int, timeout: float = 15) -> None:
    """Until nginx accepts connections on ``port``; RuntimeError if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode} (see nginx-stderr.log)")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on {port} within {timeout}s")


def main(argv: list[str]) -> None:
    """Write the configuration under PREFIX and replace this process with nginx."""
    prefix, listen, api, *events = argv
    folder = Path(prefix).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    conf = write_nginx_conf(folder, int(api), int(listen), int(events[0]) if events else None)
    command = nginx_command(folder, conf)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
