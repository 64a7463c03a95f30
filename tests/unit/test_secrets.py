"""No secret anyone can read: settings refuse a missing or published secret; the local set-up makes its own.

Also the one-time move of a state dir's data from the former built-in keys (services/common/rekey.py), on
documents as they are stored; the same against the real FerretDB is tests/integration/test_rekey.py."""

from __future__ import annotations

import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.common import rekey
from services.common.protect import protector
from services.common.settings import (
    FORMER_BUILT_IN,
    KNOWN_PUBLIC_VALUES,
    SECRET_SETTINGS,
    Settings,
    describe_errors,
)

REPO = Path(__file__).resolve().parents[2]
SECRETS_SH = REPO / "deploy" / "local" / "secrets.sh"
ENV_SH = REPO / "deploy" / "local" / "env.sh"
VARIABLES = [f"HONGLING_{name.upper()}" for name in SECRET_SETTINGS]


def refusal(monkeypatch: pytest.MonkeyPatch, variable: str, value: str | None) -> str:
    """The start-up message when `variable` is `value` (None: unset) and every other secret is good."""
    if value is None:
        monkeypatch.delenv(variable, raising=False)
    else:
        monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as exc:
        Settings()
    return describe_errors(exc.value)


@pytest.mark.parametrize("variable", VARIABLES)
def test_a_missing_secret_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    text = refusal(monkeypatch, variable, None)
    assert f"{variable}: not set" in text
    assert "secrets.env" in text  # says where the local set-up keeps them
    assert [v for v in VARIABLES if v in text] == [variable]
    assert refusal(monkeypatch, variable, "   ").count(variable) == 1


@pytest.mark.parametrize("known", sorted(KNOWN_PUBLIC_VALUES))
@pytest.mark.parametrize("variable", VARIABLES)
def test_every_published_value_is_refused_for_every_secret(
    monkeypatch: pytest.MonkeyPatch, variable: str, known: str
) -> None:
    text = refusal(monkeypatch, variable, known)
    assert f"{variable}: is " in text
    assert "published value" in text
    assert known not in text  # a secret's value is never echoed


@pytest.mark.parametrize(
    "placeholder",
    [
        "change-me-please-this-is-long-enough-0123456789",
        "CHANGEME_secret_for_the_hongling_deployment_xyz",
        "replace-me-with-something-long-and-random-12345",
        "my-key-not-for-production-but-quite-long-enough",
        "your-secret-here-and-it-is-longer-than-32-chars",
        "x" * 48,
    ],
)
def test_obvious_placeholders_are_refused(monkeypatch: pytest.MonkeyPatch, placeholder: str) -> None:
    text = refusal(monkeypatch, "HONGLING_DATA_KEY", placeholder)
    assert "HONGLING_DATA_KEY: is a placeholder" in text
    assert placeholder not in text


def test_a_short_secret_is_refused_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    text = refusal(monkeypatch, "HONGLING_SESSION_SECRET", "s3cr3t-but-short")
    assert "HONGLING_SESSION_SECRET: is shorter than 32 characters" in text
    assert "s3cr3t-but-short" not in text


def test_random_secrets_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {v: secrets.token_urlsafe(32) for v in VARIABLES}
    for variable, value in values.items():
        monkeypatch.setenv(variable, value)
    s = Settings()
    assert [getattr(s, name) for name in SECRET_SETTINGS] == list(values.values())


def bare_env(**extra: str) -> dict[str, str]:
    """An environment with no HONGLING_* secret in it (nor any other HONGLING_* variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HONGLING_", "_HONGLING_"))}
    return env | extra


@pytest.mark.parametrize("module", ["services.intake", "gateway"])
def test_a_process_given_the_former_built_in_secret_does_not_start(module: str) -> None:
    env = bare_env(**{v: secrets.token_urlsafe(32) for v in VARIABLES})
    env["HONGLING_PRINCIPAL_SECRET"] = FORMER_BUILT_IN["principal_secret"]
    env["HONGLING_PORT_BASE"] = "1030"  # were it to start, on ports nobody else uses
    done = subprocess.run(
        [sys.executable, "-m", module], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "HONGLING_PRINCIPAL_SECRET: is the former built-in HONGLING_PRINCIPAL_SECRET" in done.stderr
    assert FORMER_BUILT_IN["principal_secret"] not in done.stderr + done.stdout


def test_a_process_without_secrets_does_not_start_and_names_each() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.org"], env=bare_env(), cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    for variable in VARIABLES:
        assert f"{variable}: not set" in done.stderr


# ---------------------------------------------------------------- deploy/local/secrets.sh


def run_bash(script: str, state: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script],
        env=bare_env(HONGLING_STATE_DIR=str(state), **extra),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def secrets_in(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_secrets_sh_creates_a_private_file_once_and_keeps_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    run_bash(f"bash {SECRETS_SH} ensure", state)
    file = state / "secrets.env"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    first = secrets_in(file)
    assert sorted(first) == sorted(VARIABLES)
    assert all(len(v) >= 32 for v in first.values())
    assert len(set(first.values())) == len(VARIABLES)  # one secret per purpose
    run_bash(f"bash {SECRETS_SH} ensure", state)
    assert secrets_in(file) == first
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert not (state / "rekey-pending").exists()  # a new state dir holds nothing sealed with the former keys
    other = tmp_path / "other"
    run_bash(f"bash {SECRETS_SH}", other)
    assert secrets_in(other / "secrets.env") != first  # random, not a constant


def test_secrets_sh_adds_a_missing_secret_to_an_existing_file(tmp_path: Path) -> None:
    file = tmp_path / "secrets.env"
    file.write_text("HONGLING_PRINCIPAL_SECRET=kept-as-it-is-0123456789abcdef0123456789\n")
    file.chmod(0o644)
    run_bash(f"bash {SECRETS_SH} ensure", tmp_path)
    found = secrets_in(file)
    assert found["HONGLING_PRINCIPAL_SECRET"] == "kept-as-it-is-0123456789abcdef0123456789"
    assert sorted(found) == sorted(VARIABLES)
    assert stat.S_IMODE(file.stat().st_mode) == 0o600


def test_env_sh_loads_the_file_and_the_environment_wins(tmp_path: Path) -> None:
    run_bash(f"bash {SECRETS_SH} ensure", tmp_path)
    stored = secrets_in(tmp_path / "secrets.env")
    mine = secrets.token_urlsafe(32)
    shown = run_bash(
        f"set -euo pipefail; source {ENV_SH}; " + "; ".join(f'echo "{v}=${{{v}}}"' for v in VARIABLES),
        tmp_path,
        HONGLING_DATA_KEY=mine,
    ).stdout
    assert dict(line.split("=", 1) for line in shown.splitlines()) == stored | {"HONGLING_DATA_KEY": mine}


def test_env_sh_sourced_again_for_another_state_dir_loads_that_dirs_secrets(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for state in (a, b):
        run_bash(f"bash {SECRETS_SH} ensure", state)
    shown = run_bash(
        f'set -euo pipefail; source {ENV_SH}; HONGLING_STATE_DIR="{b}"; source {ENV_SH}; echo "$HONGLING_DATA_KEY"',
        a,
    ).stdout.strip()
    assert shown == secrets_in(b / "secrets.env")["HONGLING_DATA_KEY"]


def test_a_state_dir_where_services_ran_before_is_marked_for_rekey(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "org.log").write_text("{}\n")
    run_bash(f"bash {SECRETS_SH} ensure", tmp_path)
    assert (tmp_path / "rekey-pending").exists()


# ---------------------------------------------------------------- re-sealing former-key data (documents)


def test_reseal_moves_personal_data_to_the_new_key_and_recomputes_the_lookup_key() -> None:
    old, new = protector(FORMER_BUILT_IN["data_key"]), protector(secrets.token_urlsafe(32))
    person = {
        "_id": "p-1",
        "name_zh": "张三",
        "phone_enc": old.seal("13800138000"),
        "phone_masked": "138****8000",
        "id_number_enc": old.seal("370902199001011234"),
        "id_number_key": old.lookup_key("370902199001011234"),
        "history": [{"contact": {"phone_enc": old.seal("13900139000")}}],
        "none_person": {"id_number_enc": "", "id_number_key": "none:p-1"},
    }
    again, n = rekey.reseal(person, old, new)
    assert n == 3
    assert new.open(again["phone_enc"]) == "13800138000"
    assert new.open(again["id_number_enc"]) == "370902199001011234"
    assert new.open(again["history"][0]["contact"]["phone_enc"]) == "13900139000"
    assert again["id_number_key"] == new.lookup_key("370902199001011234") != person["id_number_key"]
    assert again["none_person"] == person["none_person"]
    assert {k: again[k] for k in ("_id", "name_zh", "phone_masked")} == {
        "_id": "p-1",
        "name_zh": "张三",
        "phone_masked": "138****8000",
    }
    with pytest.raises(ValueError):
        old.open(again["phone_enc"])  # nothing is left readable with the published key
    assert rekey.reseal(again, old, new) == (again, 0)  # a second run changes nothing


def test_docker_compose_requires_every_secret_without_a_default() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    for variable in VARIABLES:
        found = re.findall(rf"^\s+{variable}: (.*)$", text, re.MULTILINE)
        assert len(found) == 1, f"{variable} once in x-service's environment"
        assert found[0].startswith(f"${{{variable}:?"), f"{variable} must be required, without a default: {found[0]}"
        assert variable in found[0].split(":?", 1)[1]  # compose's message names it
    assert not any(known in text for known in KNOWN_PUBLIC_VALUES)


def test_docker_compose_read_side_password_is_required_and_the_write_side_a_replica_set() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    uses = re.findall(r"\$\{HONGLING_READ_DB_PASSWORD([^}]*)\}", text)
    assert len(uses) >= 2 and all(u.startswith(":?") for u in uses), uses  # PostgreSQL's own and the services' URL
    assert re.search(r"^\s+POSTGRES_PASSWORD: \$\{HONGLING_READ_DB_PASSWORD:\?", text, re.MULTILINE)
    url = re.findall(r"^\s+HONGLING_READ_DB_URL: (.*)$", text, re.MULTILINE)
    assert len(url) == 1 and url[0].startswith("postgresql+psycopg://hongling:${HONGLING_READ_DB_PASSWORD:?")
    assert re.search(r'"--replSet", "rs0"', text) and "mongodb://mongo:27017/?replicaSet=rs0" in text
    images = re.findall(r"^\s+image: (\S+)", text, re.MULTILINE)
    assert images and all(re.fullmatch(r"[\w./-]+:v?\d+\.\d+(\.\d+)?", i) for i in images), images  # pinned releases
