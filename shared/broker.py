"""Embedded MQTT brokers for the one-machine main job and the test suite.

Evaluation (recorded in README): amqtt 0.12 runs in-process but speaks only
MQTT 3.1.1; it refuses an MQTT 5 CONNECT ("Invalid protocol ... 5"), so it
cannot give us session expiry or shared subscriptions. Mosquitto (Debian
package ``mosquitto``) speaks MQTT 5, persists sessions to disk and is what
deployments run. The default, ``auto``, starts the ``mosquitto`` binary on a
free loopback port when one is installed, and falls back to amqtt in-process
(clients then use MQTT 3.1.1) only when it is not.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Literal

from shared.broker_security import BrokerSecurity
from shared.errors import BrokerStartError
from shared.settings import MqttSettings

logger = logging.getLogger(__name__)

BrokerKind = Literal["auto", "mosquitto", "amqtt"]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Poll until a TCP connection to ``host:port`` succeeds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def find_mosquitto() -> Path | None:
    """The mosquitto binary on PATH or in Debian's /usr/sbin, if installed."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    return Path(found) if found else None


def _reachable(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether ``user`` may traverse every folder down to ``path`` (ignoring ACLs)."""
    for folder in [*reversed(path.resolve().parents), path.resolve()]:
        try:
            st = folder.stat()
        except OSError:
            return False
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid == user.pw_gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


class EmbeddedBroker(ABC):
    """A broker this process started and will stop."""

    host = "127.0.0.1"
    port: int
    protocol: Literal["5", "3.1.1"]

    @abstractmethod
    def start(self) -> None:
        """Start and wait until it accepts connections; raise BrokerStartError if not."""

    @abstractmethod
    def stop(self) -> None:
        """Stop it and wait for it to exit."""

    def mqtt_settings(self, **overrides: Any) -> MqttSettings:
        """Client settings that reach this broker."""
        values: dict[str, Any] = {"host": self.host, "port": self.port, "protocol": self.protocol}
        return MqttSettings(**{**values, **overrides})

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MosquittoBroker(EmbeddedBroker):
    """The ``mosquitto`` binary on a loopback port, with its state in ``workdir``.

    By default the listener is plain TCP and anonymous. With ``security`` it is
    TLS only, with the password file and ACL of :class:`BrokerSecurity` (copied
    into ``workdir`` so that the broker's user can read them), and
    :meth:`mqtt_settings` trusts its CA.
    """

    protocol: Literal["5", "3.1.1"] = "5"

    def __init__(
        self,
        port: int | None = None,
        workdir: Path | None = None,
        *,
        max_packet_size: int | None = None,
        binary: Path | None = None,
        security: BrokerSecurity | None = None,
    ) -> None:
        self.port = port or free_port()
        self.security = security
        self._security_tmp: Path | None = None
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="goldenhour-mosquitto-"))
        self.max_packet_size = max_packet_size
        self._binary = binary or find_mosquitto()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        """Where mosquitto writes its log."""
        return self.workdir / "mosquitto.log"

    def mqtt_settings(self, **overrides: Any) -> MqttSettings:
        """Client settings that reach this broker (trusting its CA when secured)."""
        if self.security:
            overrides.setdefault("tls_ca_file", self.security.ca_file)
        return super().mqtt_settings(**overrides)

    def _security_dir(self, owner: pwd.struct_passwd | None) -> Path:
        """A folder for the security files that the broker's user can reach."""
        if owner is None or _reachable(self.workdir, owner):
            folder = self.workdir / "security"
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        # e.g. pytest's tmp_path, below a root-only folder: the dropped broker
        # could not open the password file there.
        if self._security_tmp is None:
            self._security_tmp = Path(tempfile.mkdtemp(prefix="goldenhour-mosquitto-security-"))
        return self._security_tmp

    def _listener(self, owner: pwd.struct_passwd | None) -> list[str]:
        if self.security is None:
            return [f"listener {self.port} {self.host}", "allow_anonymous true"]
        folder = self._security_dir(owner)
        copies: dict[str, Path] = {}
        for key, source in self.security.source_files().items():
            if not source.is_file():
                raise BrokerStartError(f"broker security file missing: {source}")
            copies[key] = folder / f"{key}{source.suffix}"
            copies[key].write_bytes(source.read_bytes())
            copies[key].chmod(0o600)
            if owner:
                os.chown(copies[key], owner.pw_uid, owner.pw_gid)
        if owner:
            os.chown(folder, owner.pw_uid, owner.pw_gid)
        folder.chmod(0o700)
        return self.security.listener_lines(self.port, self.host, copies)

    def _config(self) -> str:
        owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("mosquitto")
            except KeyError:
                owner = None
        lines = [
            *self._listener(owner),
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
            # Without it, Nagle's algorithm holds small PUBACKs back for up to
            # ~40 ms when several are outstanding (measured: 59 ms per batch).
            "set_tcp_nodelay true",
        ]
        if self.max_packet_size:
            lines.append(f"max_packet_size {self.max_packet_size}")
        if os.geteuid() == 0:
            # Mosquitto drops root to the 'mosquitto' user; let that user write its
            # state and read the security files.
            if owner:
                os.chown(self.workdir, owner.pw_uid, owner.pw_gid)
                lines.append("user mosquitto")
            else:
                lines.append("user root")
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        if self._binary is None:
            raise BrokerStartError(
                "mosquitto is not installed (Debian: apt-get install mosquitto)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "mosquitto.conf"
        config.write_text(self._config())
        self._process = subprocess.Popen(
            [str(self._binary), "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if not wait_for_port(self.host, self.port, timeout=10) or self._process.poll() is not None:
            self.stop()
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise BrokerStartError(f"mosquitto did not start on port {self.port}: {log[-2000:]}")
        logger.info("mosquitto started", extra={"port": self.port, "pid": self._process.pid})

    def kill(self) -> None:
        """``kill -9`` the broker, as a crash would (for chaos tests)."""
        if self._process and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        if self._process and self._process.stderr:
            self._process.stderr.close()
        self._process = None

    def cleanup(self) -> None:
        """Stop and remove the work directory if this object made it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self._security_tmp:
            shutil.rmtree(self._security_tmp, ignore_errors=True)
            self._security_tmp = None


class AmqttBroker(EmbeddedBroker):
    """amqtt in a background thread of this process: MQTT 3.1.1 only."""

    protocol: Literal["5", "3.1.1"] = "3.1.1"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None

    def start(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            raise BrokerStartError(
                "no broker available: install mosquitto, or pip install 'goldenhour[embedded-broker]'"
            ) from exc
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._broker = Broker(config, loop=loop)
                loop.run_until_complete(self._broker.start())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
        self._thread.start()
        ready.wait(15)
        if failure or not wait_for_port(self.host, self.port, timeout=10):
            raise BrokerStartError(f"amqtt did not start on port {self.port}: {failure}")
        logger.warning(
            "amqtt started in-process (MQTT 3.1.1 only); install mosquitto for MQTT 5",
            extra={"port": self.port},
        )

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._broker is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), loop)
        try:
            future.result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread:
                self._thread.join(timeout=10)
            self._loop = None


def start_embedded_broker(
    kind: BrokerKind = "auto", port: int | None = None, workdir: Path | None = None
) -> EmbeddedBroker:
    """Start the requested broker (``auto``: mosquitto if installed, else amqtt)."""
    broker: EmbeddedBroker
    if kind == "mosquitto" or (kind == "auto" and find_mosquitto()):
        broker = MosquittoBroker(port=port, workdir=workdir)
    else:
        broker = AmqttBroker(port=port)
    broker.start()
    return broker
