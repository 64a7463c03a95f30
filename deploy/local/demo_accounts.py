"""The local demo's people, one per portal role, made by `make up` (deploy/local/banner.sh) through the
accounts CLI (python -m gateway.users, so each is audited like any account change).

Their passwords are random, made here once and kept in $HONGLING_STATE_DIR/demo-accounts.txt (mode 600; the
state dir is git-ignored); never constants in the code. An account that exists without its password in that
file (the file was removed) gets a new one. Prints "user<TAB>password<TAB>what" lines for the banner.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

# (user name, role, tenant, community, display name, what the account is for)
PEOPLE = (
    ("demo.admin", "subdistrict_admin", "taiqian", "", "泰前街道管理员", "subdistrict admin, 泰前街道"),
    ("demo.worker", "community_worker", "taiqian", "jiade", "嘉德社区网格员", "community worker, 嘉德社区"),
    ("demo.approver", "district_approver", "*", "", "区委审核人", "district approver"),
)


def cli(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.users", *args],
        input=f"{password}\n" if password is not None else None,
        capture_output=True,
        text=True,
        check=False,
    )


def main() -> int:
    path = Path(os.environ["HONGLING_STATE_DIR"]) / "demo-accounts.txt"
    known: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            user, _, password = line.partition("\t")
            known[user] = password
    for user, role, tenant, community, display, what in PEOPLE:
        if user not in known:
            password = secrets.token_urlsafe(12)
            scope = ["--all-tenants"] if tenant == "*" else ["--tenant", tenant]
            extra = ["--community", community] if community else []
            made = cli("create", "--username", user, "--role", role, *scope, *extra, "--display-name", display,
                       password=password)  # fmt: skip
            if made.returncode != 0 and "exists already" in made.stderr:
                made = cli("set-password", "--username", user, password=password)
            if made.returncode != 0:
                print(f"error: could not make the demo account {user}: {made.stderr.strip()}", file=sys.stderr)
                return 1
            known[user] = password
        print(f"{user}\t{known[user]}\t{what}")
    old = os.umask(0o077)
    try:
        path.write_text("".join(f"{u}\t{p}\n" for u, p in known.items()), encoding="utf-8")
    finally:
        os.umask(old)
    return 0


if __name__ == "__main__":
    sys.exit(main())
