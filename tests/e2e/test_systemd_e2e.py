"""The shipped systemd units, run for real: a private systemd (PID 1 of new PID and mount namespaces)
starts bffproxy.service and bffproxy-events.service with every hardening directive they ship.

`systemd-analyze security` (tests/test_deploy.py) scores the files; this checks that gunicorn, gevent
and bffproxy still work inside them: the system-call filter, MemoryDenyWriteExecute, ProtectProc,
PrivateUsers, the cache and runtime directories, the control socket, reload and a refused start.
Only paths, ports and the interpreter's home are changed (see ``sandboxed``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from .services import Strapi, bff_env, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
SYSTEMD = Path("/lib/systemd/systemd")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not SYSTEMD.exists() or not shutil.which("unshare") or not shutil.which("nsenter"),
    reason="needs root, systemd, unshare and nsenter (a private systemd runs the units)",
)

# Runs inside the new namespaces: the service user in a private /etc/passwd, a private /run and
# /var/cache, then systemd as PID 1 loading only our units (SYSTEMD_UNIT_PATH).
BOOT = """#!/bin/sh
set -e
mount --bind {root}/passwd /etc/passwd
mount --bind {root}/group /etc/group
mount -t proc proc /proc
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/cache
SYSTEMD_UNIT_PATH={root}/units container=bffproxy-e2e exec {systemd} --system --unit=e2e.target
"""

EMPTY_TARGETS = ("e2e.target", "sysinit.target", "basic.target", "shutdown.target", "network-online.target")


@dataclass
class PrivateSystemd:
    """systemd as PID 1 of its own namespaces, sharing this machine's network (loopback ports)."""

    root: Path
    process: subprocess.Popen[bytes] | None = None
    pid: int = 0  # systemd's pid as this machine sees it

    def start(self) -> PrivateSystemd:
        """Boot it with an empty target and wait until it runs."""
        (self.root / "units").mkdir(parents=True)
        for target in EMPTY_TARGETS:  # what a service's default dependencies name, and nothing else
            (self.root / "units" / target).write_text(f"[Unit]\nDescription={target} (empty)\n")
        uid = next(n for n in range(990, 900, -1) if not _id_taken(n))
        (self.root / "passwd").write_text(
            Path("/etc/passwd").read_text() + f"bffproxy:x:{uid}:{uid}::/opt/bffproxy:/usr/sbin/nologin\n"
        )
        (self.root / "group").write_text(Path("/etc/group").read_text() + f"bffproxy:x:{uid}:\n")
        boot = self.root / "boot.sh"
        boot.write_text(BOOT.format(root=self.root, systemd=SYSTEMD))
        boot.chmod(0o755)
        namespaces = ["--pid", "--fork", "--mount", "--uts", "--ipc", "--cgroup", "--propagation", "private"]
        with open(self.root / "systemd.log", "wb") as log:
            self.process = subprocess.Popen(
                ["unshare", *namespaces, str(boot)], stdout=log, stderr=log, start_new_session=True
            )
        wait_until(self._booted, 30, "the private systemd")
        return self

    def _booted(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.skip(f"cannot boot a private systemd here: {(self.root / 'systemd.log').read_text()}")
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        if not children:
            return False
        self.pid = int(children[0])
        state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
        return state in ("running", "degraded")

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in systemd's namespaces (its /run, its PIDs)."""
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-p", "--", *command],
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def install(self, source: Path, env_file: Path) -> str:
        """Copy a shipped unit in (see ``sandboxed``) and load it; its name."""
        (self.root / "units" / source.name).write_text(
            sandboxed(source.read_text(), env_file, self.log(source.name))
        )
        self.run("systemctl", "daemon-reload")
        return source.name

    def log(self, unit: str) -> Path:
        """Where the unit's stdout and stderr go (no journald here)."""
        return self.root / f"{unit}.log"

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """``systemctl show``'s values of ``properties``."""
        out = self.run("systemctl", "show", unit, "-p", ",".join(properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def stop(self) -> None:
        """Kill PID 1 of the namespace: the kernel ends every process in it."""
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(15)


def _id_taken(number: int) -> bool:
    return any(
        line.split(":")[2] == str(number)
        for path in ("/etc/passwd", "/etc/group")
        for line in Path(path).read_text().splitlines()
        if line.count(":") >= 2
    )


def sandboxed(text: str, env_file: Path, log: Path) -> str:
    """The shipped unit with this checkout for /opt/bffproxy, a test env file, and a log file.

    The hardening changes: this machine's Python lives under /root (pyenv), which ProtectHome=yes
    hides (a packaged Python, /usr/bin/python3, does not need it), and a checkout under /tmp is
    hidden by PrivateTmp=yes: each is bound in read-only.
    """
    text = text.replace("/opt/bffproxy", str(ROOT))
    text = text.replace("EnvironmentFile=/etc/bffproxy/bffproxy.env", f"EnvironmentFile={env_file}")
    python_home = Path(sys.base_prefix).resolve()
    if python_home.is_relative_to("/root") or python_home.is_relative_to("/home"):
        text = text.replace("ProtectHome=yes", f"ProtectHome=tmpfs\nBindReadOnlyPaths={python_home}")
    if any(ROOT.is_relative_to(folder) for folder in ("/tmp", "/var/tmp")):
        # A checkout under /tmp (a CI clone) is hidden by PrivateTmp=yes: bind it in, read-only.
        text = text.replace("PrivateTmp=yes", f"PrivateTmp=yes\nBindReadOnlyPaths={ROOT}")
    return text.replace("[Service]\n", f"[Service]\nStandardOutput=append:{log}\nStandardError=inherit\n", 1)


@dataclass
class Installed:
    """Both units in a private systemd, each on its own loopback port."""

    systemd: PrivateSystemd
    api_port: int
    events_port: int
    env_file: Path

    def url(self, path: str, events: bool = False) -> str:
        return f"http://127.0.0.1:{self.events_port if events else self.api_port}{path}"

    def main_pid(self, unit: str) -> int:
        return int(self.systemd.show(unit, "MainPID")["MainPID"])

    def status(self, unit: str, pid: int) -> dict[str, str]:
        """/proc/<pid>/status of a process of the unit, as the kernel enforces it."""
        text = self.systemd.run("cat", f"/proc/{pid}/status").stdout
        return dict(re.split(r":\s*", line, maxsplit=1) for line in text.splitlines() if ":" in line)


@pytest.fixture
def installed(tmp_path: Path, strapi_live: Strapi) -> Iterator[Installed]:
    """bffproxy.service and bffproxy-events.service installed (not started) in a private systemd."""
    systemd = PrivateSystemd(tmp_path / "systemd").start()
    try:
        api_port, events_port = free_port(), free_port()
        env = bff_env(strapi_live, Path("/var/cache/bffproxy"), METRICS_ALLOW="127.0.0.1")
        env.update(GUNICORN_BIND=f"127.0.0.1:{api_port}", GUNICORN_EVENTS_BIND=f"127.0.0.1:{events_port}")
        env_file = tmp_path / "bffproxy.env"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
        for unit in ("bffproxy.service", "bffproxy-events.service"):
            systemd.install(UNITS / unit, env_file)
        yield Installed(systemd, api_port, events_port, env_file)
    finally:
        systemd.stop()


def _start(installed: Installed, unit: str) -> None:
    result = installed.systemd.run("systemctl", "start", unit, check=False)
    assert result.returncode == 0, result.stderr + installed.systemd.log(unit).read_text()


RUNTIME = [
    ("bffproxy.service", "/run/bffproxy", "metrics"),
    ("bffproxy-events.service", "/run/bffproxy-events", "metrics-events"),
]


def test_both_units_serve_with_every_hardening_directive_enforced(installed: Installed) -> None:
    _start(installed, "bffproxy.service")
    _start(installed, "bffproxy-events.service")
    first = requests.get(installed.url("/api/articles?pagination[pageSize]=3"), timeout=30)
    second = requests.get(installed.url("/api/articles?pagination[pageSize]=3"), timeout=30)
    assert (first.status_code, first.headers["X-Cache"], second.headers["X-Cache"]) == (200, "MISS", "HIT")
    # Counted in the multiprocess dir in /run/bffproxy once the answer is sent (so: soon after).
    wait_until(
        lambda: 'route="/api/<collection>"' in requests.get(installed.url("/metrics"), timeout=10).text,
        10,
        "the reads counted in /metrics",
    )
    with requests.get(
        installed.url("/api/events?collections=articles", events=True), stream=True, timeout=10
    ) as sse:
        assert sse.status_code == 200  # gevent's greenlets under MemoryDenyWriteExecute
        assert next(sse.iter_lines()) is not None
    for unit, runtime, metrics_dir in RUNTIME:
        status = installed.status(unit, installed.main_pid(unit))
        assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", status  # filter mode
        assert status["CapEff"] == "0000000000000000"
        assert metrics_dir in installed.systemd.run("ls", runtime).stdout.split()
    assert "gunicorn.ctl" in installed.systemd.run("ls", "/run/bffproxy").stdout.split()  # gunicornc works
    log = installed.systemd.log("bffproxy.service").read_text()
    assert "Failed to start control socket" not in log and "Traceback" not in log, log
    assert "Traceback" not in installed.systemd.log("bffproxy-events.service").read_text()


def test_reload_replaces_the_workers_inside_the_sandbox(installed: Installed) -> None:
    _start(installed, "bffproxy.service")
    before = {requests.get(installed.url("/healthz"), timeout=10).headers["X-BFF-Worker"] for _ in range(8)}
    installed.systemd.run("systemctl", "reload", "bffproxy.service")
    wait_until(
        lambda: requests.get(installed.url("/healthz"), timeout=10).headers["X-BFF-Worker"] not in before,
        30,
        "a new worker",
    )
    assert installed.systemd.show("bffproxy.service", "ActiveState")["ActiveState"] == "active"
    log = installed.systemd.log("bffproxy.service")
    wait_until(lambda: "configuration reloaded" in log.read_text(), 10, "the arbiter's reload line")
    _start(installed, "bffproxy-events.service")  # its check runs the gevent config and app
    installed.systemd.run("systemctl", "reload", "bffproxy-events.service")
    wait_until(
        lambda: "configuration reloaded" in installed.systemd.log("bffproxy-events.service").read_text(),
        30,
        "the events app's reload",
    )
    assert installed.systemd.show("bffproxy-events.service", "ActiveState")["ActiveState"] == "active"


def test_a_cache_dir_owned_by_root_is_handed_back_to_the_service_user(installed: Installed) -> None:
    # An operator restored a backup as root: /var/cache/bffproxy and its files are root's.
    # CacheDirectory= gives them back to the service user on start (only when the directory itself
    # is not the service user's: files root creates inside a directory it owns stay root's).
    installed.systemd.run(
        "sh", "-c", "mkdir -p /var/cache/bffproxy/store && touch /var/cache/bffproxy/store/x"
    )
    installed.systemd.run("chmod", "-R", "0700", "/var/cache/bffproxy")
    _start(installed, "bffproxy.service")
    assert requests.get(installed.url("/api/articles"), timeout=30).headers["X-Cache"] in ("MISS", "HIT")
    owner = installed.systemd.run("stat", "-c", "%U", "/var/cache/bffproxy/store/x").stdout.strip()
    assert owner == "bffproxy"


def test_an_unwritable_cache_dir_stops_the_start_once_with_one_line(installed: Installed) -> None:
    # BFFPROXY_CACHE_DIR pointed outside CacheDirectory=: ProtectSystem=strict makes it read-only.
    text = installed.env_file.read_text().replace("/var/cache/bffproxy", "/var/lib/bffproxy")
    installed.env_file.write_text(text)
    result = installed.systemd.run("systemctl", "start", "bffproxy.service", check=False)
    assert result.returncode != 0
    shown = installed.systemd.show("bffproxy.service", "ExecMainStatus", "NRestarts", "ActiveState")
    assert shown == {"ExecMainStatus": "3", "NRestarts": "0", "ActiveState": "failed"}, shown
    log = installed.systemd.log("bffproxy.service").read_text()
    assert re.search(r"bffproxy: configuration error: BFFPROXY_CACHE_DIR .*/var/lib/bffproxy", log), log


def test_a_broken_gunicorn_conf_fails_the_reload_and_the_server_keeps_serving(installed: Installed) -> None:
    """On HUP, a gunicorn.conf.py that fails to load makes gunicorn exit with all its workers:
    the unit checks it (gunicorn --check-config) before sending the HUP."""
    conf = "/var/cache/e2e-conf/gunicorn.conf.py"  # the sandbox's /var/cache: a copy we may break
    installed.systemd.run("sh", "-c", f"mkdir -p {Path(conf).parent} && cp {ROOT}/gunicorn.conf.py {conf}")
    unit = installed.systemd.root / "units" / "bffproxy.service"
    unit.write_text(unit.read_text().replace(f"{ROOT}/gunicorn.conf.py", conf))
    installed.systemd.run("systemctl", "daemon-reload")
    _start(installed, "bffproxy.service")
    pid = installed.main_pid("bffproxy.service")
    installed.systemd.run("sh", "-c", f"echo 'workers = (' >> {conf}")  # an edit half done
    result = installed.systemd.run("systemctl", "reload", "bffproxy.service", check=False)
    assert result.returncode != 0, "the reload should fail"
    assert installed.systemd.show("bffproxy.service", "ActiveState") == {"ActiveState": "active"}
    assert installed.main_pid("bffproxy.service") == pid
    for _ in range(5):
        assert requests.get(installed.url("/healthz"), timeout=10).status_code == 200
    assert "Worker exiting" not in installed.systemd.log("bffproxy.service").read_text()


def test_a_second_copy_of_the_unit_is_refused_and_leaves_the_first_intact(installed: Installed) -> None:
    """An operator copies bffproxy.service to run a second instance and changes only the bind."""
    _start(installed, "bffproxy.service")
    assert requests.get(installed.url("/healthz"), timeout=10).status_code == 200  # a count to see
    systemd, other = installed.systemd, installed.env_file.with_name("second.env")
    other.write_text(f"GUNICORN_BIND=127.0.0.1:{free_port()}\n")
    text = sandboxed(
        (UNITS / "bffproxy.service").read_text(), installed.env_file, systemd.log("second.service")
    )
    text = text.replace(
        f"EnvironmentFile={installed.env_file}\n",
        f"EnvironmentFile={installed.env_file}\nEnvironmentFile={other}\n",
    )
    (systemd.root / "units" / "second.service").write_text(text)
    systemd.run("systemctl", "daemon-reload")
    assert systemd.run("systemctl", "start", "second.service", check=False).returncode != 0
    shown = systemd.show("second.service", "ExecMainStatus", "NRestarts", "ActiveState")
    assert shown == {"ExecMainStatus": "3", "NRestarts": "0", "ActiveState": "failed"}, shown
    assert (
        "PROMETHEUS_MULTIPROC_DIR '/run/bffproxy/metrics' is in use"
        in systemd.log("second.service").read_text()
    )
    # The first keeps its metrics directory and control socket (RuntimeDirectoryPreserve=yes).
    assert {"gunicorn.ctl", "metrics"} <= set(systemd.run("ls", "/run/bffproxy").stdout.split())
    wait_until(
        lambda: "bffproxy_requests_total" in requests.get(installed.url("/metrics"), timeout=10).text,
        10,
        "the first instance's counts in /metrics",
    )


def test_a_purge_run_as_root_is_refused_and_leaves_the_service_cache_alone(installed: Installed) -> None:
    """The operator runs `bffproxy purge --all` as root: root-owned files in the service's cache once
    stalled its next read ~33 s; the command now refuses (exit 2) and names the user to run it as."""
    _start(installed, "bffproxy.service")
    path = "/api/articles?pagination[pageSize]=4"
    assert [requests.get(installed.url(path), timeout=30).headers["X-Cache"] for _ in range(2)] == [
        "MISS",
        "HIT",
    ]
    purge = f"cd {ROOT} && BFFPROXY_ENV_FILE={installed.env_file} {ROOT}/.venv/bin/bffproxy purge --all"
    result = installed.systemd.run("sh", "-c", purge, check=False)
    assert result.returncode == 2 and "sudo -u" in (result.stdout + result.stderr), result
    assert requests.get(installed.url(path), timeout=30).headers["X-Cache"] == "HIT"
