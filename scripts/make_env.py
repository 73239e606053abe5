#!/usr/bin/env python3
"""Write .env with fresh random keys - only if it does not exist yet.

Never overwrites: replacing FIELD_ENCRYPTION_KEY would make every stored
secret unreadable. Standard library only (runs before the virtualenv exists).
    python scripts/make_env.py            # create .env if missing
    python scripts/make_env.py --print-key  # print a new Fernet key
"""

import base64
import os
import secrets
import sys
from pathlib import Path

ENV_FILE = Path(__file__).resolve().parent.parent / ".env"


def fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def main() -> int:
    if "--print-key" in sys.argv:
        print(fernet_key())
        return 0
    if ENV_FILE.exists():
        print(f"{ENV_FILE.name} exists: kept as it is (its keys protect stored secrets).")
        return 0
    ENV_FILE.write_text(
        "# Written by scripts/make_env.py for local development. Never commit this file.\n"
        "DEBUG=true\n"
        f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
        "# Comma-separated; the first key encrypts, all decrypt. Losing it loses the stored secrets.\n"
        f"FIELD_ENCRYPTION_KEY={fernet_key()}\n"
        "PUBLIC_BASE_URL=http://127.0.0.1:8000\n"
        "ALLOWED_HOSTS=127.0.0.1,localhost\n"
    )
    ENV_FILE.chmod(0o600)
    print(f"Wrote {ENV_FILE.name} with a new SECRET_KEY and FIELD_ENCRYPTION_KEY.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
