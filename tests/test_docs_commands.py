"""Every command shown in README.md and docs/ is run, or its rule says why not and what covers it (issue 19).

What counts as a command: every line of a fenced `bash` (`sh`, `shell`, `console`, untagged) block, the
command of every `cron` line, and every inline `code` span that starts with a command word (make, python,
manage.py, systemctl, ...). Blocks that are not commands are fenced `text`, `ini`, `nginx` or `python`.

Each command must match a rule of RULES, which says how it is covered:

- RUN: executed as written by bash, in order, in a fresh copy of the repository (its tracked files, this
  run's virtualenv as .venv) with a production-like environment: the production template copied where the
  deploy guide says (the /etc path moved under the test's temporary folder), its keys filled in with the
  output of the documented key command, SQLite in a temporary folder. A rule may make one controlled change,
  named in its `how` (e.g. `createsuperuser --noinput` where no terminal answers its questions, pip's
  `--dry-run --no-index` so that nothing is downloaded).
- POSTGRES: the backup and restore commands, run as written against two fresh PostgreSQL databases
  (the PostgreSQL leg of CI), with the round trip checked: the restored secrets decrypt with the key, and
  `check --database default` reports E002 with another key.
- OPTIONS: a `manage.py` command that needs a Jira or runs forever: every option it uses must be one the
  command accepts (its --help), and `covered_by` names the test that runs it.
- COVERED: run by another test (`covered_by` names the file and test; both must exist), e.g. `make run` by
  tests/test_make_run.py, `make test` by CI itself.
- HOST: needs root on a production host (systemctl, useradd, apt-get, /etc/nginx): not run here; `check`
  verifies what the command names exists in the repository (the unit files, the nginx site, the user the
  units run as).

A command without a rule fails test_every_command_in_the_docs_has_a_rule: a new command in the docs needs a
rule before it lands. The links of README.md and docs/ (files, screenshots, #anchors) are checked too.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_WORDS = ("make", "python", "python3", "manage.py", "bash", "pg_dump", "pg_restore", "systemctl", "journalctl",
                 "nginx", "honcho", "gunicorn", "cp", "jira_sandbox/manage.py", "openssl", "git", "install", "ln",
                 "useradd", "apt-get", "pip", "cd")
INLINE = re.compile(r"`((?:[A-Z_]+=\S+ )*(?:\.venv/bin/\S+|" + "|".join(re.escape(w) for w in COMMAND_WORDS)
                    + r") [^`]*)`")
FENCE = re.compile(r"^ *```(\w*)\n(.*?)^ *```", re.S | re.M)


@dataclass(frozen=True)
class Command:
    text: str
    where: str  # file:line


def documented_commands() -> list[Command]:
    commands = []
    for path in DOCS:
        text = path.read_text()
        name = path.relative_to(ROOT)
        for block in FENCE.finditer(text):
            line_no = text[:block.start()].count("\n") + 2
            for offset, line in enumerate(block.group(2).splitlines()):
                line = re.split(r"\s{2,}#", line)[0].strip()  # "make run    # comment"
                if block.group(1) == "cron" and line and not line.startswith("#"):
                    line = " ".join(line.split()[5:])  # the command after the five schedule fields
                elif block.group(1) not in ("bash", "sh", "shell", "console", ""):
                    continue
                if line and not line.startswith("#"):
                    commands.append(Command(line, f"{name}:{line_no + offset}"))
        prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for match in INLINE.finditer(prose.replace("\n", " ")):
            commands.append(Command(match.group(1), f"{name} (inline)"))
    return commands


# --------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------


@dataclass
class Rule:
    pattern: str
    kind: str  # RUN, POSTGRES, OPTIONS, COVERED, HOST
    how: str
    covered_by: str = ""  # tests/file.py::test_name
    transform: Callable[[str, dict], str] | None = None  # RUN: the controlled change, if any
    check: Callable[[subprocess.CompletedProcess, dict], None] | None = None  # RUN: what the output must show
    host_check: Callable[[], None] | None = None  # HOST: what the repository must hold for it
    regex: re.Pattern = field(init=False)

    def __post_init__(self):
        self.regex = re.compile(self.pattern)


def _on_own_sandbox(state: dict, *, setup: bool = True) -> str:
    """What runs a sandbox command on a sandbox database in the test's folder (set up first when `setup`)."""
    run = f"SANDBOX_DATABASE_PATH={state['tmp'] / 'sandbox.sqlite3'} .venv/bin/python "
    return (run + "jira_sandbox/manage.py sandbox_setup >/dev/null && " if setup else "") + run


def _service_account_json(result: subprocess.CompletedProcess, state: dict) -> None:
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["client_id"] and answer["client_secret"], answer


def _units(command: str) -> list[str]:
    return re.findall(r"kendis-[a-z]+", command)


def _units_exist(command_pattern: str):
    def check():
        for unit in {"kendis-web", "kendis-refresher"}:
            assert (ROOT / "deploy" / "systemd" / f"{unit}.service").is_file(), unit
    return check


def _unit_user_and_directory():
    for unit in ("kendis-web", "kendis-refresher"):
        text = (ROOT / "deploy" / "systemd" / f"{unit}.service").read_text()
        assert "User=kendis" in text and "WorkingDirectory=/srv/kendis-integration" in text, unit
        assert "EnvironmentFile=/etc/kendis-integration/env" in text, unit


def _nginx_site():
    site = (ROOT / "deploy" / "nginx" / "kendis-integration.conf").read_text()
    assert "ssl_certificate" in site and "/srv/kendis-integration/staticfiles/" in site


def _fernet_key(result, state):
    key = result.stdout.strip()
    Fernet(key)
    state.setdefault("keys", []).append(key)


def _version(result, state):
    import kendis_integration

    changelog = (ROOT / "CHANGELOG.md").read_text()
    newest = re.search(r"^## (\d+\.\d+\.\d+)", changelog, re.M).group(1)
    assert result.stdout.strip() == kendis_integration.__version__ == newest


def _superuser(result, state):
    assert "Superuser created successfully." in result.stdout, result.stdout


def _no_issues_or_only_w002(result, state):
    # SQLite with DEBUG off here: the only warning allowed is W002 (use PostgreSQL in production).
    issues = re.findall(r"\((\w+\.\w\d+)\)", result.stdout + result.stderr)
    assert set(issues) <= {"alm_accounts.W002"}, result.stdout + result.stderr


def _metrics_token(result, state):
    assert len(result.stdout.strip()) >= 24


def _env_installed(result, state):
    assert oct(state["etc"].stat().st_mode & 0o777) == "0o700"  # readable by root only
    env_file = state["etc"] / "env"
    assert not env_file.exists() or oct(env_file.stat().st_mode & 0o777) == "0o600"


def _venv_created(result, state):
    assert (state["tmp"] / "new-venv" / "bin" / "python3").exists()


RULES = [
    # --- make: the two commands and the ports (their own tests run them) ---
    Rule(r"^make run( PORT=(8001|…))?$", "COVERED", "make run in a fresh clone, on another port, busy port",
         covered_by="tests/test_make_run.py::test_make_run_on_a_fresh_clone_serves_on_the_port_asked_for"),
    Rule(r"^make sandbox( SANDBOX_PORT=8091)?$", "COVERED", "make sandbox in a fresh clone on another port",
         covered_by="tests/test_make_run.py::test_make_sandbox_serves_on_its_port_and_registers_the_app_s_cloud_callback"),
    Rule(r"^cp \.env\.development\.example \.env$", "COVERED", "the copied example is filled in and starts the app",
         covered_by="tests/test_env_examples.py::test_the_development_example_copied_to_env_is_what_make_run_starts_with"),
    Rule(r"^(UPDATE_SCREENSHOTS=1 |DATABASE_URL=\$\(bash scripts/start_postgres\.sh \| tail -1\) )?make test$|"
         r"^bash \.ci/run$|^make lint$", "COVERED", "CI runs `make test` on SQLite and on PostgreSQL (.ci/run); "
         "`make lint` is its first two steps (ruff, the layer contract)",
         covered_by=".ci/run"),
    # --- deploy: a fresh host ---
    Rule(r"^apt-get install -y python3-venv nginx$", "HOST", "root on a Debian host; nginx is what "
         "scripts/ensure_nginx.sh installs for the browser test", host_check=lambda: None),
    Rule(r"^useradd --system --home-dir /srv/kendis-integration --shell /usr/sbin/nologin kendis$", "HOST",
         "creates the service user the units name", host_check=_unit_user_and_directory),
    Rule(r"^git (clone \S+ /srv/kendis-integration|pull)$|^cd /srv/kendis-integration$", "HOST",
         "the fresh clone is simulated by copying the tracked files", host_check=_unit_user_and_directory),
    Rule(r"^python3 -m venv \.venv$", "RUN", "into another folder (.venv is this run's virtualenv)",
         transform=lambda c, s: c.replace(".venv", str(s["tmp"] / "new-venv")), check=_venv_created),
    Rule(r"^(\.venv/bin/)?pip install -r requirements\.txt$", "RUN",
         "pip's --dry-run --no-index: nothing downloaded, every pinned requirement already satisfied",
         transform=lambda c, s: ".venv/bin/pip install --dry-run --no-index --disable-pip-version-check "
                                "-q -r requirements.txt"),
    Rule(r"^install -d -m 700 /etc/kendis-integration$|^install -m 600 \.env\.production\.example "
         r"/etc/kendis-integration/env$", "RUN", "/etc/kendis-integration moved under the test's folder",
         transform=lambda c, s: c.replace("/etc/kendis-integration", str(s["etc"])), check=_env_installed),
    Rule(r"^export ENV_FILE=/etc/kendis-integration/env$", "RUN", "every command here runs with ENV_FILE set to "
         "the env file the install step made (under the test's folder)",
         transform=lambda c, s: c.replace("/etc/kendis-integration", str(s["etc"]))),
    Rule(r"^(python3?|\.venv/bin/python) scripts/make_env\.py --print-key$|^python manage\.py generate_encryption_key$",
         "RUN", "a Fernet key; the deploy test pastes it into the env file", check=_fernet_key),
    Rule(r"^python -c \"import secrets; print\(secrets\.token_urlsafe\(32\)\)\"$", "RUN", "a METRICS_TOKEN",
         check=_metrics_token),
    Rule(r"^\.venv/bin/python -c \"import kendis_integration; print\(kendis_integration\.__version__\)\"$", "RUN",
         "the version, the same as CHANGELOG.md's newest", check=_version),
    Rule(r"^(\.venv/bin/)?(python )?manage\.py check( --deploy| --database default)?$", "RUN",
         "against the filled production template (SQLite: only W002 is allowed); the inline shorthand "
         "`manage.py …` run as `python manage.py …`", check=_no_issues_or_only_w002,
         transform=lambda c, s: "python " + c if c.startswith("manage.py") else c),
    Rule(r"^(\.venv/bin/)?python manage\.py (migrate|collectstatic) --noinput$", "RUN", "as written"),
    Rule(r"^\.venv/bin/python manage\.py createsuperuser$", "RUN",
         "--noinput with DJANGO_SUPERUSER_* (no terminal answers its questions here)",
         transform=lambda c, s: ("DJANGO_SUPERUSER_USERNAME=admin DJANGO_SUPERUSER_EMAIL=ops@example.com "
                                 f"DJANGO_SUPERUSER_PASSWORD={s['password']} {c} --noinput"),
         check=_superuser),
    Rule(r"^DJANGO_SUPERUSER_USERNAME=admin DJANGO_SUPERUSER_PASSWORD=… python manage\.py ensure_admin$", "RUN",
         "with a real password for …", transform=lambda c, s: c.replace("…", s["password"]).replace(
             "USERNAME=admin", "USERNAME=ops")),
    Rule(r"^python manage\.py reencrypt_secrets$", "RUN", "as written (nothing stored yet: counts 0)"),
    Rule(r"^cd /srv/kendis-integration && \.venv/bin/python manage\.py refresh_tokens( --window \d+)? -v 0$", "RUN",
         "the cron lines, from the copy instead of /srv/kendis-integration",
         transform=lambda c, s: c.replace("cd /srv/kendis-integration && ", "")),
    Rule(r"^gunicorn -c deploy/gunicorn\.conf\.py$", "RUN", "gunicorn's --check-config: the configuration loads",
         transform=lambda c, s: ".venv/bin/python -m " + c + " --check-config"),
    Rule(r"^GUNICORN_BIND=127\.0\.0\.1:8000 \.venv/bin/honcho start -e /dev/null -f Procfile$", "COVERED",
         "the production browser test runs honcho on the Procfile (with its own GUNICORN_BIND)",
         covered_by="tests/e2e/test_production_profile_browser.py::test_production_profile_in_chromium_and_clean_stop"),
    Rule(r"^jira_sandbox/manage\.py sandbox_create_project --key KEY --name NAME$", "RUN",
         "with KEY=OPS, NAME=Operations, on a sandbox database of the test's own",
         transform=lambda c, s: (f"SANDBOX_DATABASE_PATH={s['tmp'] / 'sandbox.sqlite3'} .venv/bin/python "
                                 "jira_sandbox/manage.py sandbox_setup >/dev/null && SANDBOX_DATABASE_PATH="
                                 f"{s['tmp'] / 'sandbox.sqlite3'} .venv/bin/python "
                                 + c.replace("KEY", "OPS").replace("NAME", "Operations"))),
    Rule(r"^jira_sandbox/manage\.py sandbox_create_service_account( --cloud)? --name \"[^\"]+\""
         r"( --\w+ (\"[^\"]+\"|\S+))*$", "RUN", "on a sandbox database of the test's own; prints the credentials "
         "as JSON", transform=lambda c, s: _on_own_sandbox(s) + c, check=_service_account_json),
    Rule(r"^jira_sandbox/manage\.py sandbox_disable_service_account --client-id CLIENT_ID( --enable)?$", "RUN",
         "CLIENT_ID: the Client ID of a service account the test creates first (once), on a sandbox database of its "
         "own",
         transform=lambda c, s: (f"( [ -s {s['tmp'] / 'sa.json'} ] || ( {_on_own_sandbox(s)}jira_sandbox/manage.py "
                                 f"sandbox_create_service_account --name Docs >{s['tmp'] / 'sa.json'} ) ) && "
                                 + _on_own_sandbox(s, setup=False)
                                 + c.replace("CLIENT_ID", "$(python -c 'import json, sys; print(json.load(sys.stdin)"
                                             f"[\"client_id\"])' <{s['tmp'] / 'sa.json'})"))),
    # --- manage.py commands that need a Jira or run forever ---
    Rule(r"^(python )?manage\.py jira_call\b", "OPTIONS", "needs a connected Jira account",
         covered_by="tests/test_jira_request.py::test_jira_call_sends_data_and_params"),
    Rule(r"^(python )?manage\.py refresh_tokens --loop -v 1$", "OPTIONS", "runs until stopped",
         covered_by="tests/test_refresher_loop.py::test_make_run_s_procfile_declares_both_processes_and_its_refresher_stops_on_ctrl_c"),
    Rule(r"^manage\.py refresh_tokens --force --account NAME …$", "OPTIONS", "needs a connected Jira account",
         covered_by="tests/test_refresh_command.py"),
    # --- backup and restore ---
    Rule(r"^pg_dump |^pg_restore ", "POSTGRES", "run as written against two fresh PostgreSQL databases"),
    # --- a production host's services ---
    Rule(r"^systemctl (daemon-reload|(enable --now|reload|restart|start|stop) kendis-(web|refresher)"
         r"( kendis-refresher)?)$", "HOST", "systemd on the production host; the units are in deploy/systemd/",
         host_check=_units_exist("systemctl")),
    Rule(r"^journalctl -u kendis-refresher -f$", "HOST", "the journal of the production host",
         host_check=_units_exist("journalctl")),
    Rule(r"^cp deploy/systemd/kendis-web\.service deploy/systemd/kendis-refresher\.service /etc/systemd/system/$",
         "HOST", "root on the production host", host_check=_units_exist("cp")),
    Rule(r"^cp deploy/nginx/kendis-integration\.conf /etc/nginx/sites-available/kendis-integration$|"
         r"^ln -s /etc/nginx/sites-available/kendis-integration /etc/nginx/sites-enabled/$", "HOST",
         "the host's nginx; the site itself runs in the production browser test", host_check=_nginx_site),
    Rule(r"^nginx -t && systemctl reload nginx$", "COVERED", "`nginx -t` on the site: the production browser "
         "test runs it before starting nginx", covered_by="tests/e2e/test_production_profile_browser.py::Nginx"),
    Rule(r"^openssl s_client -connect jira\.example\.com:443 -showcerts$", "HOST",
         "needs the customer's Jira; the CA it finds is tested with trustme's CA", host_check=lambda: None),
]


def rule_for(command: Command) -> Rule | None:
    return next((rule for rule in RULES if rule.regex.search(command.text)), None)


# --------------------------------------------------------------------------
# Every command has a rule; what covers it exists
# --------------------------------------------------------------------------


def test_every_command_in_the_docs_has_a_rule():
    commands = documented_commands()
    assert len(commands) > 40, commands  # the extraction itself works
    missing = [f"{c.where}: {c.text}" for c in commands if rule_for(c) is None]
    assert not missing, "Commands in the docs without a rule in tests/test_docs_commands.py:\n" + "\n".join(missing)
    # The README's two commands are the first thing one sees.
    readme = (ROOT / "README.md").read_text()
    first_block = FENCE.search(readme)
    assert readme.index(first_block.group(0)) < 40, "the two commands are not at the top of the README"
    assert [line.split()[:2] for line in first_block.group(2).splitlines()] == [["make", "run"], ["make", "test"]]
    assert len(readme.splitlines()) < 120, "the README is meant to be a short front door"


def test_what_covers_a_command_exists():
    for rule in RULES:
        if not rule.covered_by:
            continue
        path, _, name = rule.covered_by.partition("::")
        text = (ROOT / path).read_text()
        if name:
            assert re.search(rf"^(def|class) {re.escape(name)}\b", text, re.M), rule.covered_by
    assert "make test" in (ROOT / ".ci" / "run").read_text() and "DATABASE_URL=" in (ROOT / ".ci" / "run").read_text()


def test_host_commands_name_what_the_repository_holds():
    for command in documented_commands():
        rule = rule_for(command)
        if rule is not None and rule.kind == "HOST":
            rule.host_check()
            for unit in _units(command.text):
                if unit in ("kendis-web", "kendis-refresher"):
                    assert (ROOT / "deploy" / "systemd" / f"{unit}.service").is_file(), command


def test_manage_py_options_in_the_docs_are_accepted():
    for command in documented_commands():
        rule = rule_for(command)
        if rule is None or rule.kind != "OPTIONS":
            continue
        words = re.sub(r"^(python )?manage\.py ", "", command.text).split()
        help_text = subprocess.run([sys.executable, "manage.py", words[0], "--help"], cwd=ROOT,
                                   capture_output=True, text=True, timeout=60,
                                   env={**os.environ, "DJANGO_SETTINGS_MODULE": "kendis_integration.settings_test"})
        assert help_text.returncode == 0, help_text.stderr
        for option in (w.split("=")[0] for w in words if w.startswith("--")):
            assert option in help_text.stdout, f"{command.where}: {command.text}: {option} is not an option"


# --------------------------------------------------------------------------
# The RUN commands, in the order the docs show them, in a fresh copy
# --------------------------------------------------------------------------


def fresh_copy(target: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    (target / ".venv").symlink_to(Path(sys.prefix))
    return target


def fill_keys(env_file: Path, key: str) -> None:
    text = env_file.read_text().replace("SECRET_KEY=\n", f"SECRET_KEY={secrets.token_urlsafe(50)}\n")
    env_file.write_text(text.replace("FIELD_ENCRYPTION_KEY=\n", f"FIELD_ENCRYPTION_KEY={key}\n"))


def test_the_commands_of_the_docs_run(tmp_path):
    copy = fresh_copy(tmp_path / "kendis-integration")
    state = {"tmp": tmp_path, "etc": tmp_path / "etc-kendis-integration", "password": "Docs-" + secrets.token_hex(8)}
    env = {"PATH": f"{copy / '.venv' / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "ENV_FILE": str(state["etc"] / "env"), "DJANGO_SETTINGS_MODULE": "kendis_integration.settings",
           # Real variables win over the env file: SQLite and static files in the test's folder.
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "STATIC_ROOT": str(tmp_path / "static")}
    ran = []
    # The deploy guide first, in its order (it installs the env file and makes the key), then the other pages.
    ordered = sorted(documented_commands(), key=lambda c: not c.where.startswith("docs/deploy.md"))
    for command in ordered:
        rule = rule_for(command)
        if rule is None or rule.kind != "RUN":
            continue
        if "manage.py" in command.text and "sandbox" not in command.text and "keys" not in state:
            pytest.fail(f"{command.where}: in docs/deploy.md a manage.py command comes before the key command")
        if "manage.py" in command.text and "sandbox" not in command.text and "filled" not in state:
            if not (state["etc"] / "env").exists():  # the install commands come first in the deploy guide
                state["etc"].mkdir(mode=0o700)
                shutil.copy(copy / ".env.production.example", state["etc"] / "env")
            fill_keys(state["etc"] / "env", state["keys"][0])
            state["filled"] = True
        line = rule.transform(command.text, state) if rule.transform else command.text
        result = subprocess.run(["bash", "-c", line], cwd=copy, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, f"{command.where}: {line}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        if rule.check:
            rule.check(result, state)
        ran.append(command.text)
    assert any("createsuperuser" in c for c in ran) and any("collectstatic" in c for c in ran), ran
    assert (tmp_path / "static" / "staticfiles.json").is_file()


@pytest.mark.postgres
def test_backup_and_restore_commands_round_trip_with_their_key(postgresql_only, tmp_path):
    import psycopg
    from django.conf import settings

    database = settings.DATABASES["default"]
    server = {"host": database["HOST"] or "127.0.0.1", "port": database["PORT"] or 5432,
              "user": database["USER"], "password": database["PASSWORD"]}
    names = [f"kendis_docs_{secrets.token_hex(4)}" for _ in range(2)]
    urls = [f"postgres://{server['user']}:{server['password']}@{server['host']}:{server['port']}/{n}" for n in names]
    commands = [c for c in documented_commands() if rule_for(c) and rule_for(c).kind == "POSTGRES"]
    dump_command = next(c.text for c in commands if c.text.startswith("pg_dump "))
    restore_command = next(c.text for c in commands if c.text.startswith("pg_restore "))
    key = Fernet.generate_key().decode()
    base_env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "ENV_FILE": "",
                "DJANGO_SETTINGS_MODULE": "kendis_integration.settings", "SECRET_KEY": secrets.token_urlsafe(50),
                "ALLOWED_HOSTS": "kendis.example.com", "PUBLIC_BASE_URL": "https://kendis.example.com",
                "FIELD_ENCRYPTION_KEY": key}

    def run(line: str, url: str, **extra) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", line], cwd=ROOT if "manage.py" in line else tmp_path,
                              env={**base_env, "DATABASE_URL": url, **extra}, capture_output=True, text=True,
                              timeout=300)

    with psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=10, **server) as connection:
        for name in names:
            connection.execute(f'CREATE DATABASE "{name}"')
    try:
        assert run("python manage.py migrate --noinput -v 0", urls[0]).returncode == 0
        stored = run("python manage.py shell -c \"from alm_accounts.models import ALMAccount; "
                     "ALMAccount.objects.create(name='Jira', base_url='https://jira.example.com', client_id='cid', "
                     "client_secret='backed-up-secret', client_secret_base_url='https://jira.example.com')\"", urls[0])
        assert stored.returncode == 0, stored.stderr[-3000:]

        dumped = run(dump_command, urls[0])
        assert dumped.returncode == 0, dumped.stderr
        dump = next(tmp_path.glob("kendis-*.dump"))
        restored = run(re.sub(r"kendis-\S+\.dump", dump.name, restore_command), urls[1])
        assert restored.returncode == 0, restored.stderr

        for line in ("python manage.py migrate --noinput", "python manage.py check --database default"):
            result = run(line, urls[1])
            assert result.returncode == 0, (line, result.stdout[-2000:], result.stderr[-2000:])
        secret = run("python manage.py shell -c \"from alm_accounts.models import ALMAccount; "
                     "print(ALMAccount.objects.get().client_secret)\"", urls[1])
        assert secret.stdout.strip().splitlines()[-1] == "backed-up-secret", secret.stderr[-2000:]
        # Without the key that goes with the backup, the restored secrets are unreadable, and check says so.
        wrong = run("python manage.py check --database default", urls[1],
                    FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode())
        assert wrong.returncode != 0 and "alm_accounts.E002" in wrong.stderr
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=10, **server) as connection:
            for name in names:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------
# Links: files, screenshots and anchors of README.md and docs/
# --------------------------------------------------------------------------


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", FENCE.sub("", path.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", "")).replace(" ", "-")
        found.add(slug)
    return found


def test_links_of_the_docs_lead_somewhere():
    broken = []
    for path in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", FENCE.sub("", path.read_text())):
            if re.match(r"https?://|mailto:", target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
    shots = {p.name for p in (ROOT / "docs" / "screenshots").glob("*.png")}
    shown = set(re.findall(r"screenshots/([\w.-]+\.png)", "".join(p.read_text() for p in DOCS)))
    assert shown and shown <= shots, shown - shots


def test_python_examples_of_the_docs_compile_and_call_what_exists():
    """The product's-code quickstart: it compiles, and jira_request takes the arguments it is shown with."""
    import ast
    import importlib
    import inspect

    blocks = [(path, m.group(2)) for path in DOCS for m in FENCE.finditer(path.read_text()) if m.group(1) == "python"]
    assert blocks
    for path, code in blocks:
        tree = ast.parse(code, filename=str(path))
        imported = {alias.asname or alias.name: node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) for alias in node.names}
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)):
            if call.func.id in imported:
                function = getattr(importlib.import_module(imported[call.func.id]), call.func.id)
                inspect.signature(function).bind_partial(**{k.arg: None for k in call.keywords if k.arg})
