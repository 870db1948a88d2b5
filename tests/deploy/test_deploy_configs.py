"""The deployment files in deploy/, checked by the tools that will run them.

- systemd units: ``systemd-analyze verify`` (any warning fails) and
  ``systemd-analyze security --offline`` (the exposure score). verify needs
  ExecStart's program to exist, so each unit is verified as a copy whose
  /opt/goldenhour/.venv/bin/ is this checkout's virtual environment; nothing
  else is changed. The Mosquitto drop-in is verified on top of Debian's own unit.
- Mosquitto: deploy/mosquitto.conf runs (port and folder replaced) and a queued
  QoS 1 message survives a restart; deploy/mosquitto-bridge.conf bridges that
  broker to a second, TLS-only Mosquitto, and messages cross both ways, only
  in the contract's direction, also after the national broker was down.
- deploy/compose.yaml: the official compose-spec JSON schema (shipped by the
  ``check-jsonschema`` package, a dev dependency), and its consistency with the
  hub's settings, endpoints, the proxy and Prometheus.
- deploy/nginx.conf: ``nginx -t``, then a real hub served through it while the
  second worker is down.
- deploy/postgresql/: a real PostgreSQL started with the settings and the
  pg_hba.conf, which PostgreSQL itself reports as parsed without error, and the
  hub's migrations run as the hub's (non-superuser) role.

A missing tool skips its test with the reason, or fails it when
GOLDENHOUR_REQUIRE_SERVICES=1 (deploy/test.sh; deploy/bootstrap.sh installs them).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hospital_hub import pgserver
from hospital_hub.settings import HubSettings
from shared import topics
from shared.broker import find_mosquitto, free_port, wait_for_port
from shared.broker_security import Device, acl_rules, make_certs
from shared.mqtt import PahoCommunicator
from shared.settings import MqttSettings
from tests.services import require, wait_until

DEPLOY = Path(__file__).parents[2] / "deploy"
UNITS = DEPLOY / "systemd"
VENV_BIN = Path(sys.executable).parent
QUIET_S = 1.0
"""How long a message that must not cross the bridge is waited for."""


# -- systemd -----------------------------------------------------------------------------
def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    require(found is not None, "systemd-analyze is not installed (apt-get install systemd)")
    assert found is not None
    return found


def _unit_copy(name: str, folder: Path) -> Path:
    """The unit with its programs taken from this checkout's virtual environment."""
    require((VENV_BIN / "goldenhour").exists(), f"no goldenhour command in {VENV_BIN}")
    text = (UNITS / name).read_text()
    assert "/opt/goldenhour/.venv/bin/" in text
    copy = folder / name
    copy.write_text(text.replace("/opt/goldenhour/.venv/bin/", f"{VENV_BIN}/"))
    return copy


def _directives(path: Path) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


SERVICE_UNITS = {"goldenhour-hub.service": "goldenhour-hub.service",
                 "goldenhour-edge.service": "goldenhour-edge.service",
                 "goldenhour-hub-worker@.service": "goldenhour-hub-worker@2.service"}


@pytest.mark.parametrize("unit", sorted(SERVICE_UNITS))
def test_systemd_units_verify_and_are_hardened(unit: str, tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    _unit_copy(unit, tmp_path)
    instance = SERVICE_UNITS[unit]
    result = subprocess.run([analyze, "verify", instance], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    # verify exits 0 even for unknown keys or bad values: any line naming the unit fails.
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if unit.split("@")[0] in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr

    security = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", instance],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout + security.stderr)
    assert match, security.stdout[-2000:] + security.stderr[-2000:]
    assert float(match.group(1)) <= 2.0, security.stdout[-3000:]

    d = _directives(UNITS / unit)
    assert d["Restart"] == ["on-failure"] and d["StartLimitBurst"] and d["StartLimitIntervalSec"]
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("CapabilityBoundingSet", ""),
                       ("SystemCallFilter", "@system-service")):
        assert value in d[key], key
    assert d["RestrictAddressFamilies"] and d["ReadWritePaths"] and d["User"] == ["goldenhour"]
    # The services send no sd_notify messages: no watchdog, no Type=notify.
    assert "WatchdogSec" not in d and d["Type"] == ["exec"]


def test_services_send_no_sd_notify_so_units_claim_no_watchdog() -> None:
    """If someone adds sd_notify, the units should use it (Type=notify, WatchdogSec)."""
    roots = [DEPLOY.parent / name for name in ("shared", "hospital_hub", "edge_agent")]
    users = [path for root in roots for path in root.rglob("*.py")
             if "NOTIFY_SOCKET" in path.read_text() or "sd_notify" in path.read_text()]
    assert users == []


def test_units_wait_for_the_health_endpoints() -> None:
    hub = _directives(UNITS / "goldenhour-hub.service")["ExecStartPost"][0]
    assert "shared.healthcheck hub --path /health/live" in hub
    edge = _directives(UNITS / "goldenhour-edge.service")["ExecStartPost"][0]
    assert "shared.healthcheck edge --path /health/live" in edge


def test_mosquitto_drop_in_applies_to_debians_unit(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    debian_unit = Path("/lib/systemd/system/mosquitto.service")
    require(debian_unit.exists(), "Debian's mosquitto.service is missing (apt-get install mosquitto)")
    shutil.copy(debian_unit, tmp_path / "mosquitto.service")
    (tmp_path / "mosquitto.service.d").mkdir()
    shutil.copy(UNITS / "mosquitto.service.d" / "goldenhour.conf",
                tmp_path / "mosquitto.service.d" / "goldenhour.conf")
    result = subprocess.run([analyze, "verify", "mosquitto.service"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if "mosquitto" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr
    security = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", "mosquitto.service"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert match and float(match.group(1)) <= 4.0, security.stdout[-3000:]


# -- Mosquitto -----------------------------------------------------------------------------
class Broker:
    """A Mosquitto run from a configuration text, in a folder of its own."""

    def __init__(self, config: str) -> None:
        binary = find_mosquitto()
        require(binary is not None, "mosquitto is not installed (apt-get install mosquitto)")
        assert binary is not None
        self.binary = binary
        self.folder = Path(tempfile.mkdtemp(prefix="goldenhour-deploy-mqtt-"))
        self.config = config.replace("@FOLDER@", str(self.folder))
        self.port = int(re.findall(r"^listener (\d+)", self.config, re.M)[0])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        path = self.folder / "mosquitto.conf"
        path.write_text(self.config)
        if os.geteuid() == 0:  # Mosquitto drops root to its own user, which must own its files
            user = pwd.getpwnam("mosquitto")
            for item in [self.folder, *self.folder.rglob("*")]:
                os.chown(item, user.pw_uid, user.pw_gid)
        log = open(self.folder / "stderr.log", "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen([str(self.binary), "-c", str(path)], stdout=log, stderr=log)
        log.close()
        assert wait_for_port("127.0.0.1", self.port, 10) and self.process.poll() is None, self.log()

    def log(self) -> str:
        path = self.folder / "stderr.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # a clean stop saves the persistence file
            self.process.wait(timeout=15)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} not found once in the deploy file"
    return text.replace(old, new)


def _deploy_mosquitto_conf(port: int) -> str:
    text = (DEPLOY / "mosquitto.conf").read_text()
    text = _replace_once(text, "listener 1883 127.0.0.1", f"listener {port} 127.0.0.1")
    return _replace_once(text, "persistence_location /var/lib/mosquitto/",
                         "persistence_location @FOLDER@/")


class Inbox:
    """Messages one subscription received."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()

    def __call__(self, topic: str, data: bytes) -> None:
        with self._lock:
            self.messages.append((topic, data))

    def has(self, topic: str, data: bytes) -> bool:
        with self._lock:
            return (topic, data) in self.messages


def _client(port: int, client_id: str, inbox: Inbox | None = None, topic_filter: str = "",
            ca_file: Path | None = None) -> PahoCommunicator:
    """A persistent-session MQTT 5 client (the services' own client class)."""
    client = PahoCommunicator(MqttSettings(port=port, tls_ca_file=ca_file, connect_timeout_s=5,
                                           publish_timeout_s=5, reconnect_max_s=1),
                              client_id=client_id)
    if inbox is not None:  # before connecting: queued messages arrive on connect
        client.subscribe(topic_filter, inbox, qos=1)
    client.start()
    if inbox is not None:  # again, now waiting for the broker's SUBACK
        client.subscribe(topic_filter, inbox, qos=1)
    return client


def test_mosquitto_conf_keeps_queued_messages_across_a_restart(uid: str) -> None:
    conf = (DEPLOY / "mosquitto.conf").read_text()
    for line in ("persistence true", "autosave_interval 5", "max_queued_messages 100000",
                 "max_inflight_messages 20", "queue_qos0_messages false", "max_packet_size 1048576"):
        assert re.search(rf"^{line}$", conf, re.M), line
    broker = Broker(_deploy_mosquitto_conf(free_port()))
    topic = topics.ER_OFFER.topic(hospital_id="er-1", case_id="20260101T000000Z-0000abcd")
    try:
        broker.start()
        inbox = Inbox()
        er = _client(broker.port, f"deploy-er-{uid}", inbox, topic)
        er.stop()  # away, with its session kept
        hub = _client(broker.port, f"deploy-hub-{uid}")
        hub.publish(topic, b"offer while the ER was away", qos=1)
        hub.stop()
        broker.stop()
        assert (broker.folder / "mosquitto.db").exists(), broker.log()
        broker.start()
        er = _client(broker.port, f"deploy-er-{uid}", inbox, topic)
        try:
            assert wait_until(lambda: inbox.has(topic, b"offer while the ER was away"), 10), broker.log()
        finally:
            er.stop()
    finally:
        broker.cleanup()


def _bridge_topics() -> set[tuple[str, str, int]]:
    lines = re.findall(r"^topic (\S+) (in|out|both) (\d)\s*$", (DEPLOY / "mosquitto-bridge.conf").read_text(),
                       re.M)
    return {(pattern, direction, int(qos)) for pattern, direction, qos in lines}


def test_bridge_topics_follow_the_contract() -> None:
    expected = {(spec.subscription(), "in" if spec.publisher == "hub" else "out", spec.qos)
                for spec in topics.TOPICS}
    assert _bridge_topics() == expected
    conf = (DEPLOY / "mosquitto-bridge.conf").read_text()
    for line in ("cleansession false", "bridge_insecure false", "try_private true"):
        assert re.search(rf"^{line}$", conf, re.M), line


@pytest.fixture
def bridged(uid: str) -> Iterator[tuple[Broker, Broker, Path]]:
    """(regional, national, CA file): deploy/mosquitto.conf + deploy/mosquitto-bridge.conf
    bridged over TLS to a national Mosquitto that speaks only TLS."""
    require(shutil.which("openssl") is not None, "openssl is not installed")
    certs = Path(tempfile.mkdtemp(prefix="goldenhour-deploy-certs-"))
    make_certs(certs, "localhost")
    national_port, regional_port = free_port(), free_port()
    national = Broker("\n".join([
        f"listener {national_port} 127.0.0.1", "allow_anonymous true",
        "cafile @FOLDER@/ca.crt", "certfile @FOLDER@/server.crt", "keyfile @FOLDER@/server.key",
        "tls_version tlsv1.2", "persistence true", "persistence_location @FOLDER@/",
        "autosave_interval 1", "set_tcp_nodelay true", ""]))
    bridge = (DEPLOY / "mosquitto-bridge.conf").read_text()
    bridge = _replace_once(bridge, "address national-broker.example.org:8883",
                           f"address 127.0.0.1:{national_port}")
    bridge = _replace_once(bridge, "bridge_cafile /etc/mosquitto/goldenhour/national-ca.crt",
                           "bridge_cafile @FOLDER@/ca.crt")
    regional = Broker(_deploy_mosquitto_conf(regional_port) + "\n" + bridge)
    for broker in (national, regional):
        shutil.copy(certs / "ca.crt", broker.folder / "ca.crt")
    for name in ("server.crt", "server.key"):
        shutil.copy(certs / name, national.folder / name)
    try:
        national.start()
        regional.start()
        yield regional, national, certs / "ca.crt"
    finally:
        regional.cleanup()
        national.cleanup()
        shutil.rmtree(certs, ignore_errors=True)


def test_bridge_carries_the_contract_both_ways_and_queues_while_down(
        bridged: tuple[Broker, Broker, Path], uid: str) -> None:
    regional, national, ca = bridged
    state = Inbox()
    local = _client(regional.port, f"deploy-regional-{uid}", state,
                    "$SYS/broker/connection/goldenhour-bridge-region-1/state")
    assert wait_until(lambda: state.has("$SYS/broker/connection/goldenhour-bridge-region-1/state", b"1"),
                      15), regional.log()
    up, down = Inbox(), Inbox()
    local.subscribe("goldenhour/v1/#", down, qos=1)
    hub = _client(national.port, f"deploy-national-hub-{uid}", up, "goldenhour/v1/#", ca_file=ca)
    case = "20260101T000000Z-0000beef"
    diagnosis = topics.CASE_DIAGNOSIS.topic(ambulance_id="amb-1", case_id=case)
    er_decision = topics.ER_DECISION.topic(hospital_id="er-1", case_id=case)
    offer = topics.ER_OFFER.topic(hospital_id="er-1", case_id=case)
    decision = topics.CASE_DECISION.topic(ambulance_id="amb-1", case_id=case)
    try:
        # Up: what ambulances and ERs publish reaches the hub workers.
        local.publish(diagnosis, b"diagnosis", qos=1)
        local.publish(er_decision, b"accept", qos=1)
        assert wait_until(lambda: up.has(diagnosis, b"diagnosis") and up.has(er_decision, b"accept"),
                          10), regional.log()
        # Down: what the hub publishes reaches the region.
        hub.publish(offer, b"offer", qos=1)
        hub.publish(decision, b"decision", qos=1)
        assert wait_until(lambda: down.has(offer, b"offer") and down.has(decision, b"decision"),
                          10), regional.log()
        # Only in the contract's direction: a hub topic published in the region
        # stays there, and an ambulance topic published nationally stays there.
        local.publish(decision, b"forged in the region", qos=1)
        hub.publish(diagnosis, b"forged nationally", qos=1)
        assert not wait_until(lambda: up.has(decision, b"forged in the region")
                              or down.has(diagnosis, b"forged nationally"), QUIET_S)
        # The national broker goes down: a case waits in the bridge's queue and
        # crosses when it is back (persistent sessions on both sides).
        national.stop()
        assert wait_until(lambda: not hub.connected, 10)
        assert wait_until(lambda: state.has("$SYS/broker/connection/goldenhour-bridge-region-1/state", b"0"),
                          10)
        local.publish(diagnosis, b"diagnosis during the outage", qos=1)
        national.start()
        assert wait_until(lambda: up.has(diagnosis, b"diagnosis during the outage"), 30), (
            regional.log() + national.log())
    finally:
        hub.stop()
        local.stop()


def test_emqx_acl_example_matches_the_contract() -> None:
    text = (DEPLOY / "emqx" / "acl.conf").read_text()
    rules: dict[str, set[tuple[str, str]]] = {}
    for user, action, listed in re.findall(
            r'^\{allow, \{user, "([^"]+)"\}, (publish|subscribe), \[(.*)\]\}\.$', text, re.M):
        access = "write" if action == "publish" else "read"
        rules.setdefault(user, set()).update((access, t) for t in re.findall(r'"([^"]+)"', listed))
    assert text.rstrip().endswith("{deny, all}.")
    for device in (Device("ambulance", "amb-1"), Device("er", "bos-mgh"), Device("hub", "hub-1"),
                   Device("hub", "hub-2")):
        assert rules.pop(device.username) == set(acl_rules(device)), device
    bridge = {("read" if direction == "in" else "write", pattern)
              for pattern, direction, _ in _bridge_topics()}
    assert rules.pop("bridge-region-1") == bridge
    assert rules == {}
    emqx = (DEPLOY / "emqx" / "emqx.conf").read_text()
    assert "max_packet_size = 1MB" in emqx and "shared_subscription_strategy" in emqx


# -- compose -------------------------------------------------------------------------------
def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return document


def _compose_schema() -> dict[str, Any]:
    try:
        from importlib.resources import files

        import check_jsonschema  # noqa: F401  (ships the vendored compose-spec schema)
    except ImportError:
        require(False, "check-jsonschema is not installed (pip install -e '.[dev]')")
    path = files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def _schema_errors(document: dict[str, Any]) -> list[str]:
    import jsonschema

    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{error.json_path}: {error.message[:200]}" for error in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_spec_schema() -> None:
    document = _compose()
    assert _schema_errors(document) == []
    # The check has teeth: a misspelt key is an error.
    document["services"]["hub-1"]["helthcheck"] = document["services"]["hub-1"].pop("healthcheck")
    assert any("helthcheck" in error for error in _schema_errors(document))


def _hubs(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in document["services"].items()
            if name.startswith("hub-")}


def test_compose_hub_workers_match_the_hub() -> None:
    document = _compose()
    hubs = _hubs(document)
    assert len(hubs) >= 2
    fields = set(HubSettings.model_fields)
    ids, groups, ports = set(), set(), set()
    for name, service in hubs.items():
        env = service["environment"]
        for key in env:
            if key.startswith("GOLDENHOUR_HUB_"):
                field = key.removeprefix("GOLDENHOUR_HUB_").lower().split("__")[0]
                assert field in fields, f"{name}: {key} is no hub setting"
        ids.add(env["GOLDENHOUR_HUB_HUB_ID"])
        groups.add(env["GOLDENHOUR_HUB_SHARE_GROUP"])
        ports.add(env["GOLDENHOUR_HUB_HTTP_PORT"])
        # Several workers need PostgreSQL (row locks, the outbox's advisory lock).
        assert env["GOLDENHOUR_HUB_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["GOLDENHOUR_HUB_SECRET_KEY"], "workers must share the cookie key"
        assert service["healthcheck"]["test"][-1].endswith("/health/ready")
        assert service["restart"] == "unless-stopped"
    assert len(ids) == len(hubs) and len(groups) == 1 and ports == {"8000"}
    # One worker migrates first; the others start once it is ready.
    first, *others = sorted(hubs)
    for name in others:
        assert hubs[name]["depends_on"] == {first: {"condition": "service_healthy"}}
    assert hubs[first]["depends_on"]["postgres"] == {"condition": "service_healthy"}

    from hospital_hub.api import create_app
    from hospital_hub.runtime import HubRuntime
    from hospital_hub.settings import load_hub_settings

    with tempfile.TemporaryDirectory() as folder:
        app = create_app(HubRuntime(load_hub_settings(database_url=f"sqlite:///{folder}/hub.db")))
        paths = {getattr(route, "path", None) for route in app.routes}
    assert {"/health/live", "/health/ready", "/metrics"} <= paths

    upstreams = set(re.findall(r"^\s*server ([\w.-]+:\d+)", (DEPLOY / "nginx.conf").read_text(), re.M))
    assert upstreams == {f"{name}:8000" for name in hubs}
    targets = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"][0]
    assert set(targets["static_configs"][0]["targets"]) == {f"{name}:8000" for name in hubs}


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    """Only where the Docker Compose plugin exists (Debian 12 does not package it)."""
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True,
                                        timeout=30).returncode != 0:
        pytest.skip("docker compose is not installed (not packaged by Debian 12); "
                    "the compose-spec schema test covers the file")
    env = {**os.environ, "POSTGRES_PASSWORD": "x", "GOLDENHOUR_DB_PASSWORD": "y",
           "GOLDENHOUR_HUB_SECRET_KEY": "z"}
    result = subprocess.run([docker, "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr


# -- nginx ---------------------------------------------------------------------------------
def _nginx() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    require(found is not None, "nginx is not installed (apt-get install nginx)")
    assert found is not None
    return found


def _nginx_config(folder: Path, proxy_port: int, hub_ports: list[int]) -> Path:
    site = (DEPLOY / "nginx.conf").read_text()
    site = _replace_once(site, "listen 8080;", f"listen 127.0.0.1:{proxy_port};")
    for number, port in enumerate(hub_ports, start=1):
        site = _replace_once(site, f"server hub-{number}:8000", f"server 127.0.0.1:{port}")
    (folder / "site.conf").write_text(site)
    main = folder / "nginx.conf"
    main.write_text(f"""daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/site.conf;
}}
""")
    return main


def test_nginx_serves_a_real_hub_and_skips_a_dead_worker(tmp_path: Path,
                                                         mqtt_settings: MqttSettings, uid: str) -> None:
    import urllib.error
    import urllib.request

    import uvicorn

    from hospital_hub.api import create_app
    from hospital_hub.runtime import HubRuntime
    from hospital_hub.settings import load_hub_settings
    from shared import healthcheck

    nginx = _nginx()
    folder = Path(tempfile.mkdtemp(prefix="goldenhour-deploy-nginx-"))
    live_port, dead_port, proxy_port = free_port(), free_port(), free_port()
    config = _nginx_config(folder, proxy_port, [live_port, dead_port])
    checked = subprocess.run([nginx, "-t", "-c", str(config), "-p", str(folder)],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr

    runtime = HubRuntime(load_hub_settings(hub_id=f"nginx-{uid}", mqtt=mqtt_settings,
                                           database_url=f"sqlite:///{tmp_path / 'hub.db'}"))
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=live_port,
                                           log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    proxy = None
    try:
        assert wait_until(lambda: server.started, 30)
        proxy = subprocess.Popen([nginx, "-c", str(config), "-p", str(folder)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for_port("127.0.0.1", proxy_port, 10)
        base = f"http://127.0.0.1:{proxy_port}"
        for _ in range(4):  # round robin meets the dead worker and moves on
            with urllib.request.urlopen(f"{base}/health/ready", timeout=10) as response:
                assert response.status == 200
                assert json.loads(response.read())["status"] == "ready"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/metrics", timeout=10)
        assert refused.value.code == 404  # scraped per worker, not through the proxy
        with urllib.request.urlopen(f"http://127.0.0.1:{live_port}/metrics", timeout=10) as response:
            assert b"goldenhour_hub_broker_connected 1.0" in response.read()
        # The healthcheck command of the units and the compose file.
        assert healthcheck.main([f"{base}/health/ready"]) == 0
        assert healthcheck.main([f"http://127.0.0.1:{dead_port}/health/live", "--timeout", "2"]) == 1
        env = {"GOLDENHOUR_HUB_HTTP_HOST": "0.0.0.0", "GOLDENHOUR_HUB_HTTP_PORT": str(live_port)}
        assert healthcheck.service_url("hub", "/health/ready", env) == (
            f"http://127.0.0.1:{live_port}/health/ready")
        assert healthcheck.service_url("edge", "/health/live", {}) is None
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(timeout=10)
        server.should_exit = True
        thread.join(timeout=20)
        shutil.rmtree(folder, ignore_errors=True)


# -- PostgreSQL ---------------------------------------------------------------------------
def test_postgres_max_connections_covers_the_hub_pools() -> None:
    """goldenhour.conf sizes max_connections for 6 hub processes of one pool each."""
    from hospital_hub.db import make_engine

    engine = make_engine("postgresql+psycopg://goldenhour@127.0.0.1:1/goldenhour")
    per_process = engine.pool.size() + engine.pool._max_overflow  # type: ignore[attr-defined]
    conf = (DEPLOY / "postgresql" / "goldenhour.conf").read_text()
    max_connections = int(re.findall(r"^max_connections = (\d+)", conf, re.M)[0])
    reserved = int(re.findall(r"^superuser_reserved_connections = (\d+)", conf, re.M)[0])
    assert per_process == 15, "hospital_hub/db.py's pool changed: resize goldenhour.conf"
    assert 6 * per_process + reserved <= max_connections


@pytest.mark.postgres
def test_postgres_starts_with_the_settings_and_pg_hba(uid: str) -> None:
    import psycopg

    bindir = pgserver.postgres_bin()
    require(bindir is not None, "PostgreSQL is not installed (apt-get install postgresql)")
    assert bindir is not None
    base = Path(tempfile.mkdtemp(prefix="goldenhour-deploy-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: as Debian's postgres user
        user = pwd.getpwnam("postgres")
        os.chown(base, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", free_port()
    server = None
    try:
        subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                        "-U", "postgres", "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        shutil.copy(DEPLOY / "postgresql" / "goldenhour.conf", data / "goldenhour.conf")
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("\ninclude 'goldenhour.conf'\n")
        if run_as:
            for item in data.glob("goldenhour.conf"):
                os.chown(item, user.pw_uid, user.pw_gid)
        # Loopback only and a free port for the test; everything else from the file.
        server = subprocess.Popen(
            [*run_as, str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(base),
             "-c", "listen_addresses=127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert wait_for_port("127.0.0.1", port, 30), server.stderr.read().decode() if server.stderr else ""
        admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        assert wait_until(lambda: _connects(admin), 30)
        with psycopg.connect(admin, autocommit=True) as conn:
            # Every line parsed and applied, but those the command line overrides here.
            bad = conn.execute("SELECT name, error FROM pg_file_settings "
                               "WHERE sourcefile LIKE '%goldenhour.conf' AND error IS NOT NULL "
                               "AND name NOT IN ('listen_addresses', 'port')").fetchall()
            assert bad == []
            names = {r[0] for r in conn.execute(
                "SELECT name FROM pg_file_settings WHERE sourcefile LIKE '%goldenhour.conf'")}
            assert {"max_connections", "shared_buffers", "password_encryption"} <= names
            shown = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in  # type: ignore[index]
                     ("max_connections", "password_encryption", "synchronous_commit",
                      "idle_in_transaction_session_timeout", "wal_level", "shared_buffers")}
            assert shown == {"max_connections": "100", "password_encryption": "scram-sha-256",
                             "synchronous_commit": "on", "idle_in_transaction_session_timeout": "1min",
                             "wal_level": "replica", "shared_buffers": "2GB"}
            conn.execute("CREATE ROLE goldenhour LOGIN PASSWORD 'hub password'")
            conn.execute("CREATE DATABASE goldenhour OWNER goldenhour")
            # Now the example's pg_hba.conf; PostgreSQL reports every line it could not parse.
            shutil.copy(DEPLOY / "postgresql" / "pg_hba.conf", data / "pg_hba.conf")
            if run_as:
                os.chown(data / "pg_hba.conf", user.pw_uid, user.pw_gid)
            assert conn.execute("SELECT pg_reload_conf()").fetchone() == (True,)
            rules = conn.execute("SELECT type, database, user_name, auth_method, error "
                                 "FROM pg_hba_file_rules").fetchall()
            assert [r for r in rules if r[4] is not None] == []
            assert ("host", ["goldenhour"], ["goldenhour"], "scram-sha-256", None) in rules
        hub_url = f"postgresql+psycopg://goldenhour:hub%20password@127.0.0.1:{port}/goldenhour"
        assert wait_until(lambda: _connects(hub_url.replace("+psycopg", "")), 10)
        assert not _connects(f"postgresql://goldenhour:wrong@127.0.0.1:{port}/goldenhour")
        assert not _connects(f"postgresql://goldenhour:hub%20password@127.0.0.1:{port}/postgres")
        assert not _connects(f"postgresql://postgres@127.0.0.1:{port}/goldenhour")
        # The hub's own migrations run as its role (the database's owner, not a superuser).
        from hospital_hub.db import make_engine, migrate

        engine = make_engine(hub_url)
        try:
            migrate(engine)
        finally:
            engine.dispose()
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
            if server.stderr:
                server.stderr.close()
        shutil.rmtree(base, ignore_errors=True)


def _connects(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False
