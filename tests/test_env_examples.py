"""The two example environments (issue 19): each says which it is, and each works for what it says.

.env.development.example is what `make run` writes: copied to .env, `make run` fills in its empty keys and the
app starts on it. .env.production.example is the production template: with its two secrets filled in, the
production settings load and `manage.py check --deploy` is clean (it used to be the only example, said
"copy me to .env" and then broke `make run`).
"""

from __future__ import annotations

import importlib.util
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent


def run(env_file: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ENV_FILE": str(env_file),
           "DJANGO_SETTINGS_MODULE": "kendis_integration.settings"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def make_env(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_env_examples", ROOT / "scripts" / "make_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ENV_FILE", tmp_path / ".env")
    for name in ("PORT", "SECRET_KEY", "FIELD_ENCRYPTION_KEY"):
        monkeypatch.delenv(name, raising=False)
    return module


def values(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and line[0] != "#")


def test_the_development_example_copied_to_env_is_what_make_run_starts_with(make_env, tmp_path, capsys):
    example = (ROOT / ".env.development.example").read_text()
    assert example.startswith("# DEVELOPMENT settings for `make run` (never for production")
    make_env.ENV_FILE.write_text(example)
    assert make_env.main([]) == 0
    assert "filled in the empty SECRET_KEY and FIELD_ENCRYPTION_KEY" in capsys.readouterr().out
    filled = values(make_env.ENV_FILE)
    Fernet(filled["FIELD_ENCRYPTION_KEY"])
    assert len(filled["SECRET_KEY"]) >= 50
    # The same variables as the .env make run writes, and the same values apart from the keys.
    written = tmp_path / "written"
    written.mkdir()
    make_env.ENV_FILE = written / ".env"
    make_env.main([])
    generated = values(make_env.ENV_FILE)
    assert set(generated) == set(filled)
    assert {k: v for k, v in generated.items() if "KEY" not in k} == {k: v for k, v in filled.items() if "KEY" not in k}

    (tmp_path / "db").mkdir()
    with open(tmp_path / ".env", "a") as env_file:
        env_file.write(f"DATABASE_URL=sqlite:///{tmp_path / 'db' / 'db.sqlite3'}\n")
    result = run(tmp_path / ".env", tmp_path, "check")
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_production_example_says_so_and_passes_check_deploy_once_its_secrets_are_filled(tmp_path):
    example = (ROOT / ".env.production.example").read_text()
    assert example.startswith("# PRODUCTION template for kendis-integration (not for `make run`")
    empty = {k for k, v in values(ROOT / ".env.production.example").items() if not v}
    assert empty == {"SECRET_KEY", "FIELD_ENCRYPTION_KEY"}, empty
    filled = example.replace("SECRET_KEY=\n", f"SECRET_KEY={secrets.token_urlsafe(50)}\n").replace(
        "FIELD_ENCRYPTION_KEY=\n", f"FIELD_ENCRYPTION_KEY={Fernet.generate_key().decode()}\n")
    (tmp_path / "env").write_text(filled)
    result = run(tmp_path / "env", tmp_path, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout

    (tmp_path / "unfilled").write_text(example)  # as copied, before filling in: one line naming what is missing
    result = run(tmp_path / "unfilled", tmp_path, "check")
    assert result.returncode == 78
    assert result.stderr.strip().startswith("Configuration error: The environment variable SECRET_KEY is required")
