"""Issue 20, defect 10: the demo must not mislead. A busy port stops it with a
clear message instead of a banner pointing at another program; the banner's
send command stays one line; ERs can be left to a person; ``edge run
--dicom-port`` does not claim there is no X-ray source; bootstrap does not
reinstall a .venv the tests made."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from shared import supervisor
from shared.broker import free_port
from shared.demo_checks import simulated_ers
from shared.errors import GoldenhourError

REPO = Path(__file__).parents[2]


def test_demo_on_a_busy_port_exits_non_zero_without_a_banner(tmp_path: Path) -> None:
    with socket.socket() as other:  # another program already serves the port
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "shared.cli", "demo", "--ambulances", "1", "--port", str(port),
             "--state-dir", str(tmp_path / "state"), "--duration", "30"],
            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"port {port} (the hub's web port (--port)) is already in use" in result.stderr
    assert "goldenhour is running" not in result.stderr + result.stdout


def _banner(options: supervisor.DemoOptions, monkeypatch: pytest.MonkeyPatch) -> str:
    out = StringIO()
    monkeypatch.setattr(supervisor, "console", Console(file=out, width=80, force_terminal=False))
    broker = SimpleNamespace(port=41883, protocol="5")
    supervisor._banner(options, broker, None, "pw-123", Path("/a/rather/long/state/folder/path"))  # type: ignore[arg-type]
    return out.getvalue()


def test_banner_keeps_the_send_command_on_one_line_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _banner(supervisor.DemoOptions(), monkeypatch)
    lines = text.splitlines()
    send = [line for line in lines if "edge send" in line]
    assert len(send) == 1
    assert send[0].startswith("GOLDENHOUR_EDGE_MQTT__PORT=41883 GOLDENHOUR_EDGE_MQTT__PROTOCOL=5 ")
    assert send[0].endswith("edge send PATH/TO/XRAY.dcm --ambulance-id amb-1")
    assert "--human-er bos-mgh" in text  # how to answer offers yourself


def test_human_ers_are_left_out_of_the_simulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = supervisor.DemoOptions(human_ers=("bos-mgh", "bos-bmc"))
    simulated, args = simulated_ers(options.human_ers, supervisor._hospital_ids(), tmp_path)
    assert "bos-mgh" not in simulated and "bos-bmc" not in simulated and simulated
    assert args == ["--registry", str(tmp_path / "simulated-ers.csv")]
    assert "bos-mgh" not in (tmp_path / "simulated-ers.csv").read_text()
    text = _banner(options, monkeypatch)
    assert "ERs left to you: bos-mgh (sign in as er-bos-mgh at http://127.0.0.1:8000/er/bos-mgh)" in text
    with pytest.raises(GoldenhourError, match="--human-er nowhere: not in the registry"):
        simulated_ers(("nowhere",), supervisor._hospital_ids(), tmp_path)


def test_demo_with_a_human_er_waits_for_the_hub_then_prints_the_banner(tmp_path: Path) -> None:
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "demo", "--ambulances", "0", "--port", str(port),
         "--state-dir", str(tmp_path / "state"), "--human-er", "bos-mgh", "--duration", "120"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 100
        assert demo.stderr is not None
        while time.monotonic() < deadline:
            line = demo.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "edge send" in line:
                break
        text = "".join(lines)
        assert "goldenhour is running" in text, text[-2000:]
        assert "ERs left to you: bos-mgh" in text
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=5) as answer:
            assert answer.status == 200  # the banner came only once the hub served its port
        assert "bos-mgh" not in (tmp_path / "state" / "simulated-ers.csv").read_text()
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=30)
        finally:
            demo.kill()


def test_edge_run_with_a_dicom_port_does_not_warn_of_no_x_ray_source(tmp_path: Path) -> None:
    env = {**os.environ, "GOLDENHOUR_EDGE_MODEL": "placeholder", "GOLDENHOUR_EDGE_STATE_DIR": str(tmp_path),
           "GOLDENHOUR_EDGE_MQTT__PORT": str(free_port()), "GOLDENHOUR_EDGE_DICOM_HOST": "127.0.0.1"}
    outputs = {}
    for name, extra in (("dicom", ["--dicom-port", str(free_port())]), ("nothing", [])):
        run = subprocess.Popen([sys.executable, "-m", "shared.cli", "edge", "run", *extra], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(6)
        run.send_signal(signal.SIGINT)
        outputs[name] = run.communicate(timeout=30)[0]
    assert "DICOM C-STORE receiver" in outputs["dicom"]
    assert "no X-ray" not in outputs["dicom"]
    assert "no X-ray source" in outputs["nothing"]


def test_bootstrap_demo_does_not_reinstall_a_test_venv(tmp_path: Path) -> None:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.skip("mosquitto is not installed: bootstrap would try to install it")
    (tmp_path / "deploy").mkdir()
    shutil.copy(REPO / "deploy" / "bootstrap.sh", tmp_path / "deploy" / "bootstrap.sh")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    calls = tmp_path / "calls.txt"
    (venv_bin / "python").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (venv_bin / "python").chmod(0o755)
    digest = subprocess.run(["sha256sum", "pyproject.toml"], cwd=tmp_path, capture_output=True,
                            text=True, check=True).stdout[:16]
    (tmp_path / ".venv" / f".installed-test-{digest}").touch()
    result = subprocess.run(["bash", "deploy/bootstrap.sh", "demo"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr
    assert not calls.exists(), calls.read_text()  # pip never ran
    assert "installing Python packages" not in result.stderr
