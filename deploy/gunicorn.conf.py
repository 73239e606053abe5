"""gunicorn settings for kendis-integration (docs/deploy.md).

    gunicorn -c deploy/gunicorn.conf.py kendis_integration.wsgi

Run it from the project directory (the app and this file's logger class are
imported from there). Each value below comes from the environment, with a
default fit for a 2-core host behind a TLS-terminating reverse proxy on the
same host; the .env file is read as the app reads it (ENV_FILE, real
variables win). gunicorn's own GUNICORN_CMD_ARGS still override everything.

GUNICORN_BIND         where to listen: default 127.0.0.1:8000 (only the proxy on this host reaches it), or
                      0.0.0.0:$PORT when PORT is set (platforms that route to $PORT); comma-separated for
                      several, unix:/run/kendis/web.sock for a socket
GUNICORN_WORKERS      worker processes, default CPU cores + 1 (3 on 2 cores); WEB_CONCURRENCY works too
GUNICORN_THREADS      threads per worker, default 4: a request waiting on Jira (Refresh token now, Test
                      connection, the OAuth callback: up to JIRA_REFRESH_DEADLINE) holds one thread, not a
                      whole worker. Each thread keeps its own database connection (CONN_MAX_AGE): allow
                      workers x threads connections per host in PostgreSQL's max_connections.
GUNICORN_TIMEOUT      seconds, default 60 (longer than JIRA_REFRESH_DEADLINE, see below)
GUNICORN_GRACEFUL_TIMEOUT  seconds a stopping worker finishes its requests, default JIRA_REFRESH_DEADLINE + 10
FORWARDED_ALLOW_IPS   proxies whose X-Forwarded-Proto gunicorn believes, default 127.0.0.1,::1 (below)
GUNICORN_CONTROL_SOCKET  path of gunicorn's control socket (gunicornc); default: none
LOG_FORMAT            plain (default) or json: one JSON object per line, access log included
"""

import os
from pathlib import Path

import environ

# PORT is the platform's (a Procfile platform routes to it): taken before .env is read, where PORT is `make run`'s
# development port and must not make gunicorn listen on every interface.
_port = os.environ.get("PORT", "").strip()
# As kendis_integration/settings.py does: JIRA_REFRESH_DEADLINE or LOG_FORMAT set in .env count here too.
_env_file = os.environ.get("ENV_FILE", str(Path(__file__).resolve().parent.parent / ".env"))
if _env_file and Path(_env_file).is_file():
    environ.Env.read_env(_env_file, overwrite=False)


# The app's settings are loaded once here, in the master, before any worker starts: a configuration error is one
# line ("Configuration error: ...", exit code 78), not a traceback from every worker that fails to boot.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kendis_integration.settings")
from kendis_integration.config import load_settings  # noqa: E402 - after .env is read, as the app does

load_settings()


def _number(name, default, cast=int, minimum=1):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ValueError(f"{name} must be a number of at least {minimum}, not {raw!r}.")
    return value


def _cores():
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:
        return os.cpu_count() or 1


wsgi_app = "kendis_integration.wsgi:application"

bind = [address.strip() for address in os.environ.get("GUNICORN_BIND", "").split(",") if address.strip()] or (
    [f"0.0.0.0:{_port}"] if _port else ["127.0.0.1:8000"])

workers = _number("GUNICORN_WORKERS", _number("WEB_CONCURRENCY", _cores() + 1))
threads = _number("GUNICORN_THREADS", 4)
worker_class = "gthread"

# The Jira refresh deadline, read as the app reads it (kendis_integration/settings.py), same default.
_refresh_deadline = _number("JIRA_REFRESH_DEADLINE", 20.0, cast=float)
# A worker whose heartbeat is silent this long is killed. With gthread workers the heartbeat goes on while
# requests run; with sync workers (-k sync) it bounds each request. Either way it stays above the refresh
# deadline: a worker killed in the middle of a refresh loses the tokens Jira has just rotated.
timeout = _number("GUNICORN_TIMEOUT", max(60, int(_refresh_deadline * 2) + 10))
if timeout <= _refresh_deadline:
    raise ValueError(f"GUNICORN_TIMEOUT ({timeout} s) must be longer than JIRA_REFRESH_DEADLINE "
                     f"({_refresh_deadline:g} s): a worker killed during a refresh loses the new tokens.")
# On SIGTERM (systemd stop, a deploy) workers stop taking requests and get this long to finish the ones in
# flight, a refresh among them. systemd's TimeoutStopSec must be longer (deploy/systemd/kendis-web.service).
graceful_timeout = _number("GUNICORN_GRACEFUL_TIMEOUT", int(_refresh_deadline) + 10)
keepalive = 5  # seconds an idle keep-alive connection from the proxy stays open

# Only requests from these addresses may say through X-Forwarded-Proto (X-Forwarded-Ssl, ...) that the client
# used https; gunicorn ignores those headers from anyone else. Django decides "is this https?" from
# SECURE_PROXY_SSL_HEADER when that is set (and then believes whoever can reach gunicorn: keep gunicorn
# reachable by the proxy only), else from what gunicorn decided here. A proxy on another host: its address
# (or network, 10.0.0.0/8) here, or "*" when only the proxy can reach gunicorn.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# The app is loaded in each worker after the fork (no preload): no database connection, no thread and no
# random state is shared between workers.
preload_app = False

# gunicorn's control socket defaults to one path per user ($XDG_RUNTIME_DIR or ~/.gunicorn/gunicorn.ctl), which
# two instances on one host would share, and a service user may have no home: off unless a path is given.
_control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "").strip()
control_socket_disable = not _control_socket
if _control_socket:
    control_socket = _control_socket

# Logs go to stdout/stderr (journald, the platform's collector). The access log names the path only: the OAuth
# callback's query string holds the authorization code and the state. The logger class redacts that query
# from every field and from error messages as well, should someone put %(r)s or %(q)s back in this format.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'
logger_class = "kendis_integration.gunicorn_logging.Logger"
