#!/usr/bin/env python3
"""The development .env and the ports of `make run` and `make sandbox`.

Standard library only: it runs before the virtualenv exists.

    python scripts/make_env.py              # write .env (development) if missing; keep an existing one
    python scripts/make_env.py --print-key  # print a new Fernet key (FIELD_ENCRYPTION_KEY)
    python scripts/make_env.py --free-port web      # the port `make run` serves on, if free (else one line, exit 1)
    python scripts/make_env.py --free-port sandbox  # the same for `make sandbox`
    python scripts/make_env.py --cloud-callback     # the app's Jira Cloud callback URL (the sandbox registers it)

Ports: `make run PORT=8001` (the environment's PORT) wins, then PORT in .env, then 8000; the sandbox's is
SANDBOX_PORT, then SANDBOX_PORT in .env, then 8090.

An existing .env is never rewritten, except its PORT and a local PUBLIC_BASE_URL (http://127.0.0.1:<port>)
when `make run PORT=...` asks for another port: every callback URL starts with PUBLIC_BASE_URL, so it must
name the port the server listens on. Its keys are never touched: a replaced FIELD_ENCRYPTION_KEY would make
every stored secret unreadable.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import socket
import sys
from pathlib import Path

ENV_FILE = Path(__file__).resolve().parent.parent / ".env"
DEFAULT_PORTS = {"web": ("PORT", 8000), "sandbox": ("SANDBOX_PORT", 8090)}
LOCAL_BASE_URL = re.compile(r"http://(127\.0\.0\.1|localhost)(:(\d+))?/?")


class Refused(Exception):
    """One line for the person at the terminal; exit code 1."""


def fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def read_env_file() -> dict[str, str]:
    """KEY=value lines of .env (comments and blank lines skipped, surrounding quotes removed)."""
    values = {}
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def parse_port(name: str, value: str, where: str) -> int:
    if not value.strip().isdigit() or not 1 <= int(value) <= 65535:
        raise Refused(f"{name} must be a port number such as {DEFAULT_PORTS['web'][1] + 1}, not {value!r} ({where}).")
    return int(value)


def requested_port(which: str) -> int | None:
    """The port asked for on the command line (make run PORT=...), or None."""
    name = DEFAULT_PORTS[which][0]
    value = os.environ.get(name, "").strip()
    return parse_port(name, value, "on the command line or in the environment") if value else None


def port_of(which: str) -> int:
    name, default = DEFAULT_PORTS[which]
    asked = requested_port(which)
    if asked is not None:
        return asked
    in_file = read_env_file().get(name, "")
    return parse_port(name, in_file, f"in {ENV_FILE.name}") if in_file else default


def port_is_free(port: int) -> bool:
    """Whether runserver could listen on 127.0.0.1:port (as it does, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(which: str) -> int:
    """The port to serve on, or Refused naming it and how to choose another."""
    name, _ = DEFAULT_PORTS[which]
    port = port_of(which)
    if port_is_free(port):
        return port
    other = next((p for p in range(port + 1, min(port + 50, 65536)) if port_is_free(p)), port + 1)
    command = "make run" if which == "web" else "make sandbox"
    raise Refused(f"Port {port} is already in use (another {command}?). Choose another: {command} {name}={other} "
                  f"(or {name}={other} in {ENV_FILE.name}).")


def public_base_url() -> str:
    return os.environ.get("PUBLIC_BASE_URL") or read_env_file().get("PUBLIC_BASE_URL") or (
        f"http://127.0.0.1:{port_of('web')}")


def write_new_env(port: int) -> None:
    ENV_FILE.write_text(
        "# Development settings, written by `make run` (scripts/make_env.py) on its first run. Never commit it.\n"
        "# Not for production: there, see .env.production.example (docs/configuration.md).\n"
        "DEBUG=true\n"
        f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
        "# Comma-separated; the first key encrypts, all decrypt. Losing it loses the stored secrets.\n"
        f"FIELD_ENCRYPTION_KEY={fernet_key()}\n"
        "# make run serves here; every callback URL starts with PUBLIC_BASE_URL. `make run PORT=8001` moves both.\n"
        f"PORT={port}\n"
        f"PUBLIC_BASE_URL=http://127.0.0.1:{port}\n"
        "ALLOWED_HOSTS=127.0.0.1,localhost\n"
    )
    ENV_FILE.chmod(0o600)


def move_port(port: int) -> str | None:
    """Make an existing .env's PORT and local PUBLIC_BASE_URL say `port`; what changed, or None."""
    lines = ENV_FILE.read_text().splitlines(keepends=True)
    values = read_env_file()
    old_url = values.get("PUBLIC_BASE_URL", "")
    local = LOCAL_BASE_URL.fullmatch(old_url)
    old_port = values.get("PORT") or (local and local.group(3)) or str(DEFAULT_PORTS["web"][1])
    new_url = f"http://{local.group(1)}:{port}" if local else old_url
    if old_port == str(port) and new_url == old_url:
        return None
    wanted = {"PORT": str(port), **({"PUBLIC_BASE_URL": new_url} if local else {})}
    seen = set()
    for index, line in enumerate(lines):
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else None
        if key in wanted:
            lines[index] = f"{key}={wanted[key]}\n"
            seen.add(key)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines += [f"{key}={value}\n" for key, value in wanted.items() if key not in seen]
    ENV_FILE.write_text("".join(lines))
    change = f"{ENV_FILE.name}: PORT={port}" + (f" and PUBLIC_BASE_URL={new_url}" if local else "")
    if old_url and old_url != new_url:
        change += (f" (was {old_url}: Redirect URLs registered in Jira with the old port need the new one)")
    elif not local and old_url:
        change += f"; PUBLIC_BASE_URL stays {old_url}"
    return change


def fill_empty_keys() -> list[str]:
    """SECRET_KEY= and FIELD_ENCRYPTION_KEY= left empty (a copied .env.development.example) get fresh keys.

    Only an empty line in .env, and only when the environment does not set the variable: an empty key
    protects nothing yet, so nothing stored can depend on it.
    """
    makers = {"SECRET_KEY": lambda: secrets.token_urlsafe(50), "FIELD_ENCRYPTION_KEY": fernet_key}
    lines = ENV_FILE.read_text().splitlines(keepends=True)
    filled = []
    for index, line in enumerate(lines):
        key, _, value = line.partition("=")
        key = key.strip()
        if key in makers and not line.lstrip().startswith("#") and not value.strip().strip("'\"") and (
                not os.environ.get(key)):
            lines[index] = f"{key}={makers[key]()}\n"
            filled.append(key)
    if filled:
        ENV_FILE.write_text("".join(lines))
    return filled


def ensure_env() -> str:
    port = port_of("web")
    if not ENV_FILE.exists():
        write_new_env(port)
        return (f"Wrote {ENV_FILE.name} (development) with a new SECRET_KEY and FIELD_ENCRYPTION_KEY, "
                f"PORT={port}.")
    said = []
    if filled := fill_empty_keys():
        said.append(f"{ENV_FILE.name}: filled in the empty {' and '.join(filled)} with new keys.")
    if requested_port("web") is not None and (change := move_port(port)):
        said.append(change)
    return "\n".join(said) or f"{ENV_FILE.name} exists: kept as it is (its keys protect stored secrets)."


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if "--print-key" in args:
            print(fernet_key())
        elif args[:1] == ["--free-port"] and len(args) == 2 and args[1] in DEFAULT_PORTS:
            print(free_port(args[1]))
        elif args == ["--cloud-callback"]:
            print(public_base_url().rstrip("/") + "/oauth/atlassian/callback/")
        elif not args:
            print(ensure_env())
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Refused as refused:
        print(refused, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
