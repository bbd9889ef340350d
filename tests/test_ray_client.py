"""An existing cluster, as users have one: a head node that ``ray start --head`` runs on this machine, reached
through ``--address HOST:PORT`` (its GCS, as from a node of the cluster) and ``--address ray://HOST:PORT`` (Ray
Client, as from a laptop), with the token authentication recent Ray turns on for such clusters.

A module of its own: the head is a separate cluster from test_ray_engine's in-process one, and is stopped by
killing its process tree (``ray stop`` would stop every Ray process of this user).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytest.importorskip("grpc")  # ray[client]
psutil = pytest.importorskip("psutil")

from captionkit import api  # noqa: E402
from captionkit.config import RunConfig  # noqa: E402
from conftest import CLI  # noqa: E402

QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "1", "NO_COLOR": "1", "COLUMNS": "200"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        ray_bin = Path(shutil.which("ray") or "ray")
    gcs, client = free_port(), free_port()
    temp = tmp_path_factory.mktemp("ray")
    token = temp / "auth_token"  # recent Ray turns token authentication on for `ray start --head`: use it
    token.write_text(secrets.token_hex(32), encoding="ascii")
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    proc = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", f"--port={gcs}", f"--ray-client-server-port={client}",
         "--num-cpus=2", "--include-dashboard=false", "--node-ip-address=127.0.0.1", f"--temp-dir={temp}",
         "--object-store-memory=100000000", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, **QUIET, **auth})
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None and not answers(client):
            time.sleep(0.2)
        if not answers(client):
            raise RuntimeError(f"ray start --head did not open the client port: {proc.stderr.read()[-2000:]}")
        yield {"client": f"ray://127.0.0.1:{client}", "gcs": f"127.0.0.1:{gcs}", "auth": auth}
    finally:
        procs = [proc.pid]
        try:
            procs += [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
        for pid in procs:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("kind", ["gcs", "client"])
def test_cli_on_an_existing_cluster_gives_the_local_engines_results(head, kind, posts_csv, tmp_path):
    (tmp_path / "run.yaml").write_text("ray: {connect_timeout: 30}\n", encoding="utf-8")  # a busy 2-core machine
    args = ["run", str(posts_csv), "--out", str(tmp_path / "ray"), "--stages", "media,facts", "--no-progress",
            "--engine", "ray", "--address", head[kind], "--config", str(tmp_path / "run.yaml")]
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **QUIET, **head["auth"]})
    assert proc.returncode == 0, proc.stderr  # failed items (d, e) are recorded, not an exit code
    api.run(posts_csv, tmp_path / "local", RunConfig(stages=["media", "facts"]))
    got, want = read_jsonl(tmp_path / "ray" / "results.jsonl"), read_jsonl(tmp_path / "local" / "results.jsonl")
    strip = [{k: v for k, v in r.items() if k != "timings"} for r in got]
    assert strip == [{k: v for k, v in r.items() if k != "timings"} for r in want]
    assert got[3]["error"]["stage"] == "media" and "broken.jpg" in got[3]["error"]["reason"]


def test_a_client_without_the_token_is_told_what_to_set(head, posts_csv, tmp_path):
    address = head["client"]
    (tmp_path / "run.yaml").write_text("ray: {connect_timeout: 5}\n", encoding="utf-8")
    args = ["run", str(posts_csv), "--out", str(tmp_path / "out"), "--stages", "media,facts", "--no-progress",
            "--engine", "ray", "--address", address, "--config", str(tmp_path / "run.yaml")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120,
                          env={**env, **QUIET, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "no-token")})
    assert proc.returncode == 2
    assert f"--address {address}" in proc.stderr and "RAY_AUTH_MODE=token" in proc.stderr
