"""`make run PORT=...` and `make sandbox SANDBOX_PORT=...` on a fresh clone (issue 19: the first minutes).

The Makefile itself runs, in a copy of the repository's tracked files (what a fresh
clone holds: no .env, no database), with this test run's virtualenv as its .venv
and an environment as bare as a new shell's. What a developer sees is checked:
the server answers on the port asked for, the generated .env names it, the admin's
callback URLs start with it, and the sandbox registers its Jira Cloud app with that
callback. A busy port is one line naming it and how to choose another; nothing is
started (no honcho tearing down the refresher).

The port logic of scripts/make_env.py is also driven directly: the order in which
the port is taken (command line, .env, default) and how an existing .env follows a
new port without its keys ever changing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.doubles.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
WAIT_SECONDS = 60


def fresh_clone(target: Path) -> Path:
    """The tracked files of the working tree, as a clone has them, and this run's virtualenv as .venv."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(Path(sys.prefix))
    return target


def shell_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", **extra}


@contextlib.contextmanager
def make(clone: Path, env: dict, *args: str, log: Path):
    with open(log, "w") as out:
        process = subprocess.Popen(["make", *args], cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as at the terminal: make, honcho and both processes
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def run_make(clone: Path, env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`make ARGS` to its end; whatever it started is stopped should it not end in time (a server it should not
    have started)."""
    process = subprocess.Popen(["make", *args], cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def wait_for(condition, what: str, process, log: Path):
    deadline = time.monotonic() + WAIT_SECONDS
    while not (value := condition()):
        if process.poll() is not None:
            pytest.fail(f"make ended ({process.returncode}) before {what}:\n{log.read_text()[-5000:]}", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"Not within {WAIT_SECONDS} s: {what}:\n{log.read_text()[-5000:]}", pytrace=False)
        time.sleep(0.2)
    return value


def answers(url: str):
    try:
        return requests.get(url, timeout=3, allow_redirects=False)
    except requests.RequestException:
        return None


def env_values(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and line[0] != "#")


@pytest.fixture
def clone(tmp_path):
    return fresh_clone(tmp_path / "kendis-integration")


def test_make_run_on_a_fresh_clone_serves_on_the_port_asked_for(clone, tmp_path):
    port = free_port()
    log = tmp_path / "make-run.log"
    with make(clone, shell_env(tmp_path), "run", f"PORT={port}", log=log) as process:
        wait_for(lambda: f"Open http://127.0.0.1:{port}/admin/" in log.read_text(), "it said where to open", process,
                 log)
        wait_for(lambda: (r := answers(f"http://127.0.0.1:{port}/admin/login/")) is not None and r.status_code == 200,
                 f"the admin answers on port {port}", process, log)
        written = env_values(clone / ".env")
        assert written["PORT"] == str(port) and written["PUBLIC_BASE_URL"] == f"http://127.0.0.1:{port}"
        assert written["DEBUG"] == "true"

        # The admin's callback URLs start with the port too (the generated password is printed once).
        password = re.search(r"Created admin user 'admin' with password: (\S+)", log.read_text()).group(1)
        session = requests.Session()
        login = f"http://127.0.0.1:{port}/admin/login/"
        session.get(login, timeout=10)
        session.post(login, data={"username": "admin", "password": password, "next": "/admin/",
                                  "csrfmiddlewaretoken": session.cookies["csrftoken"]}, timeout=10)
        page = session.get(f"http://127.0.0.1:{port}/admin/alm_accounts/almaccount/add/", timeout=10).text
        assert f"http://127.0.0.1:{port}/oauth/jira/callback/" in page, page[-3000:]
        assert f"http://127.0.0.1:{port}/oauth/atlassian/callback/" in page
        assert ":8000/" not in page
        wait_for(lambda: "refresher.1 | Pass 1" in log.read_text(), "the refresher runs beside it", process, log)
    output = log.read_text()
    assert "Traceback" not in output, output[-5000:]
    assert password not in (clone / ".env").read_text()


def test_a_busy_port_is_one_line_saying_which_and_how_to_choose_another(clone, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_make(clone, shell_env(tmp_path), "run", f"PORT={port}", timeout=60)
        # The same through .env: PORT there is the port of every later `make run`.
        from_env_file = run_make(clone, shell_env(tmp_path), "run", timeout=60)
    for run in (result, from_env_file):
        assert run.returncode != 0
        errors = [line for line in run.stderr.splitlines() if not line.startswith("make: ***")]
        assert len(errors) == 1, run.stderr
        assert re.fullmatch(rf"Port {port} is already in use \(another make run\?\)\. Choose another: "
                            rf"make run PORT=\d+ \(or PORT=\d+ in \.env\)\.", errors[0]), errors[0]
        assert "system" not in run.stdout and "honcho" not in run.stdout + run.stderr, run.stdout
    assert not (clone / "db.sqlite3").exists(), "the database was set up before the port was found busy"


def test_make_sandbox_serves_on_its_port_and_registers_the_app_s_cloud_callback(clone, tmp_path):
    app_port, sandbox_port = free_port(), free_port()
    (clone / ".env").write_text(f"DEBUG=true\nPORT={app_port}\nPUBLIC_BASE_URL=http://127.0.0.1:{app_port}\n")
    log = tmp_path / "make-sandbox.log"
    env = shell_env(tmp_path, SANDBOX_DATABASE_PATH=str(tmp_path / "sandbox.sqlite3"))
    with make(clone, env, "sandbox", f"SANDBOX_PORT={sandbox_port}", log=log) as process:
        wait_for(lambda: (r := answers(f"http://127.0.0.1:{sandbox_port}/login/")) is not None
                 and r.status_code == 200, f"the sandbox answers on port {sandbox_port}", process, log)
    output = log.read_text()
    assert f"callback http://127.0.0.1:{app_port}/oauth/atlassian/callback/" in output, output
    assert f"ATLASSIAN_AUTH_URL=http://127.0.0.1:{sandbox_port}/cloud-auth" in output
    assert f"ATLASSIAN_API_URL=http://localhost:{sandbox_port}/cloud-api" in output


# --------------------------------------------------------------------------
# scripts/make_env.py: which port, and an existing .env following it
# --------------------------------------------------------------------------


@pytest.fixture
def make_env(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_env_ports", ROOT / "scripts" / "make_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ENV_FILE", tmp_path / ".env")
    for name in ("PORT", "SANDBOX_PORT", "PUBLIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return module


def test_the_port_comes_from_the_command_line_then_env_file_then_default(make_env, monkeypatch):
    assert make_env.port_of("web") == 8000 and make_env.port_of("sandbox") == 8090
    make_env.ENV_FILE.write_text("PORT=8011\nSANDBOX_PORT=8091\n")
    assert make_env.port_of("web") == 8011 and make_env.port_of("sandbox") == 8091
    monkeypatch.setenv("PORT", "8012")
    assert make_env.port_of("web") == 8012
    monkeypatch.setenv("PORT", "80000")
    with pytest.raises(make_env.Refused, match=r"PORT must be a port number such as 8001, not '80000'"):
        make_env.port_of("web")


def test_an_existing_env_follows_a_new_port_and_keeps_its_keys(make_env, monkeypatch, capsys):
    monkeypatch.setenv("PORT", "8000")
    assert make_env.main([]) == 0
    before = make_env.ENV_FILE.read_text()
    keys = {k: v for k, v in env_values(make_env.ENV_FILE).items() if k in ("SECRET_KEY", "FIELD_ENCRYPTION_KEY")}

    monkeypatch.setenv("PORT", "8001")
    assert make_env.main([]) == 0
    assert "PUBLIC_BASE_URL=http://127.0.0.1:8001" in capsys.readouterr().out
    after = env_values(make_env.ENV_FILE)
    assert after["PORT"] == "8001" and after["PUBLIC_BASE_URL"] == "http://127.0.0.1:8001"
    assert {k: after[k] for k in keys} == keys
    assert len(make_env.ENV_FILE.read_text().splitlines()) == len(before.splitlines())

    # An .env of older days (no PORT line) gets one; a PUBLIC_BASE_URL that is not local (a tunnel) stays.
    make_env.ENV_FILE.write_text("FIELD_ENCRYPTION_KEY=kept\nPUBLIC_BASE_URL=https://dev-tunnel.example.com")
    assert make_env.main([]) == 0
    assert make_env.ENV_FILE.read_text() == (
        "FIELD_ENCRYPTION_KEY=kept\nPUBLIC_BASE_URL=https://dev-tunnel.example.com\nPORT=8001\n")

    # Without PORT on the command line nothing is rewritten.
    monkeypatch.delenv("PORT")
    make_env.ENV_FILE.write_text("FIELD_ENCRYPTION_KEY=kept\nPUBLIC_BASE_URL=http://127.0.0.1:8000\n")
    assert make_env.main([]) == 0
    assert make_env.ENV_FILE.read_text() == "FIELD_ENCRYPTION_KEY=kept\nPUBLIC_BASE_URL=http://127.0.0.1:8000\n"


def test_free_port_and_cloud_callback(make_env, monkeypatch, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("SANDBOX_PORT", str(busy.getsockname()[1]))
        assert make_env.main(["--free-port", "sandbox"]) == 1
        assert "Choose another: make sandbox SANDBOX_PORT=" in capsys.readouterr().err
    port = free_port()
    monkeypatch.setenv("PORT", str(port))
    assert make_env.main(["--free-port", "web"]) == 0 and capsys.readouterr().out.strip() == str(port)
    assert make_env.main(["--cloud-callback"]) == 0
    assert capsys.readouterr().out.strip() == f"http://127.0.0.1:{port}/oauth/atlassian/callback/"


def test_make_run_s_port_in_env_does_not_move_gunicorn(tmp_path):
    """PORT in .env is `make run`'s; only a platform's PORT (the real environment) makes gunicorn listen on it."""
    from cryptography.fernet import Fernet

    env_file = tmp_path / ".env"
    env_file.write_text(f"DEBUG=true\nFIELD_ENCRYPTION_KEY={Fernet.generate_key().decode()}\nPORT=8123\n"
                        f"DATABASE_URL=sqlite:///{tmp_path / 'db.sqlite3'}\n")
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ENV_FILE": str(env_file)}

    def bind(env):
        result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--print-config"],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr[-2000:]
        return re.search(r"^bind\s+= (.*)$", result.stdout, re.M).group(1)

    assert bind(base) == "['127.0.0.1:8000']"
    assert bind({**base, "PORT": "5000"}) == "['0.0.0.0:5000']"
