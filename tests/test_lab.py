"""`make lab` starts JupyterLab on the chapters: the server answers and lists every notebook."""

import json
import os
import shlex
import signal
import socket
import subprocess
import time
import urllib.request

from nblib import runner

from .conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_command() -> list[str]:
    """The command `make lab` runs (without running its set-up again)."""
    dry = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    line = next(line for line in dry.splitlines() if "jupyter lab" in line)
    return shlex.split(line)


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def test_make_lab_serves_the_chapters(tmp_path):
    port, token = free_port(), "nblib-test"
    command = lab_command() + ["--no-browser", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                               f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1"]
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, listing = time.monotonic() + 90, None
        while listing is None:
            assert server.poll() is None, f"JupyterLab exited: {server.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "JupyterLab did not answer within 90 s"
            try:
                listing = json.loads(get(f"{base}/api/contents?token={token}")[1])
            except OSError:
                time.sleep(0.5)
        names = {item["name"] for item in listing["content"]}
        assert {f"{nb.name}" for nb in runner.notebooks(ROOT)} <= names
        status, page = get(f"{base}/lab?token={token}")
        assert status == 200 and "JupyterLab" in page
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
