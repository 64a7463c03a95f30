"""docker-compose.yml and deploy/Dockerfile, validated without Docker (none runs here).

The compose file against the Compose Specification's published JSON schema (vendored: deploy/compose/), with and
without the `cluster` profile; then against the code: every command a module of the repository, every HONGLING_*
variable one the code reads, every port the one the process listens on, every secret passed to every process
and only as `${VAR:?…}`, every mounted file present, the brokers one KRaft cluster that the processes reach.
A copy broken on purpose shows each check can fail.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deployment_checks import (
    FAKE_ENV,
    REPO,
    SECRET_VARIABLES,
    MissingVariable,
    compose_problems,
    dockerfile_problems,
    interpolate,
    load_compose,
    process_of,
    processes_of_services_sh,
    read_env_file,
)

COMPOSE = REPO / "docker-compose.yml"
SCHEMA = REPO / "deploy" / "compose" / "compose-spec.json"
CLUSTER_ENV = REPO / "deploy" / "compose" / "cluster.env"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
APP_SERVICES = (
    "org",
    "intake",
    "dispatch",
    "evaluation",
    "publication",
    "alliance",
    "projector",
    "gateway",
    "frontdoor",
)


def env_of(profile: str) -> dict[str, str]:
    """The operator's .env (fake secrets) and, for the cluster, deploy/compose/cluster.env beside it."""
    return {**FAKE_ENV, **(read_env_file(CLUSTER_ENV) if profile == "cluster" else {})}


def profiles_of(env: dict[str, str]) -> list[str]:
    return [p for p in env.get("COMPOSE_PROFILES", "").split(",") if p]


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))


def schema_errors(validator: jsonschema.Draft7Validator, model: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(model)]


@pytest.mark.parametrize("profile", ["default", "cluster"])
def test_the_compose_file_follows_the_compose_specification(
    validator: jsonschema.Draft7Validator, profile: str
) -> None:
    assert schema_errors(validator, load_compose(COMPOSE, env_of(profile))) == []


def test_the_schema_check_catches_a_malformed_service(validator: jsonschema.Draft7Validator) -> None:
    model = load_compose(COMPOSE, env_of("default"))
    broken = copy.deepcopy(model)
    broken["services"]["intake"]["depends_on"]["kafka-topics"]["condition"] = "service_finished"
    broken["services"]["org"]["restart_policy"] = "always"
    errors = schema_errors(validator, broken)
    assert any(e.startswith("services/intake/depends_on") for e in errors), errors
    assert any(e.startswith("services/org") and "restart_policy" in e for e in errors), errors


@pytest.mark.parametrize("profile", ["default", "cluster"])
def test_everything_the_compose_file_names_exists_in_the_code(raw: dict[str, Any], profile: str) -> None:
    env = env_of(profile)
    assert compose_problems(raw, load_compose(COMPOSE, env), profiles_of(env)) == []


def test_compose_runs_every_process_the_local_launcher_starts() -> None:
    model = load_compose(COMPOSE, env_of("default"))
    run = {process_of(svc.get("command") or []) for svc in model["services"].values()} - {None}
    assert run == set(processes_of_services_sh(REPO / "deploy" / "local" / "services.sh"))
    steps = {
        tuple(svc["command"]) for svc in model["services"].values() if "build" in svc and not process_of(svc["command"])
    }
    assert steps == {
        ("python", "-m", "services.common.topics"),
        ("python", "-m", "services.common.readside", "migrate"),
    }


def test_the_profiles_run_one_broker_or_a_quorum_of_three(raw: dict[str, Any]) -> None:
    for profile, brokers, factor in (("default", ["kafka"], "1"), ("cluster", ["kafka", "kafka-2", "kafka-3"], "3")):
        env = env_of(profile)
        model = load_compose(COMPOSE, env)
        running = [
            n
            for n, s in model["services"].items()
            if "kafka" in s.get("image", "") and (not s.get("profiles") or set(s["profiles"]) & set(profiles_of(env)))
        ]
        assert running == brokers
        voters = model["services"]["kafka"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        assert len(voters) == len(brokers)
        assert {model["services"][s]["environment"]["HONGLING_KAFKA_REPLICATION_FACTOR"] for s in APP_SERVICES} == {
            factor
        }


def test_compose_refuses_to_start_without_any_secret(raw: dict[str, Any]) -> None:
    for variable in (*SECRET_VARIABLES, "HONGLING_READ_DB_PASSWORD"):
        env = {k: v for k, v in FAKE_ENV.items() if k != variable}
        with pytest.raises(MissingVariable) as refused:
            interpolate(raw, env)
        assert refused.value.name == variable
        assert variable in str(refused.value)  # compose's message names what to set


def test_a_broken_copy_is_caught_naming_what_is_wrong(raw: dict[str, Any]) -> None:
    broken = copy.deepcopy(raw)
    services = broken["services"]
    services["dispatch"]["command"] = ["python", "-m", "services.dispatcher"]  # no such module
    services["intake"]["environment"] = {**services["intake"]["environment"], "HONGLING_INTAKE_THREADS": "4"}
    services["gateway"]["ports"] = ["127.0.0.1:8080:8000"]  # the gateway listens on 8080
    services["org"]["environment"] = {
        **services["org"]["environment"],
        "HONGLING_DATA_KEY": "a-literal-data-key-written-into-the-file-0123456789",
    }
    # (each service's own copy: the file's services share one environment through its YAML anchor)
    services["projector"]["environment"] = {
        k: v for k, v in services["projector"]["environment"].items() if k != "HONGLING_SESSION_SECRET"
    }
    services["evaluation"]["environment"] = {**services["evaluation"]["environment"], "HONGLING_ORG_ADDR": "org:7060"}
    services["prometheus"]["volumes"] = ["./deploy/prometheus/nowhere.yml:/etc/prometheus/prometheus.yml:ro"]
    services["kafka-2"]["environment"] = {**services["kafka-2"]["environment"], "KAFKA_NODE_ID": 1}
    problems = compose_problems(broken, interpolate(broken, env_of("cluster")), ["cluster"])
    expected = [
        "service dispatch: command ['python', '-m', 'services.dispatcher'] does not run a module",
        "service intake: sets HONGLING_INTAKE_THREADS, which no code reads",
        "service gateway: publishes port 8000, but gateway listens on [8080]",
        "service org: HONGLING_DATA_KEY must be ${HONGLING_DATA_KEY:?…}",
        "service projector: does not pass HONGLING_SESSION_SECRET",
        "service evaluation: reaches org at port 7060, but it listens on 7051",
        "service prometheus mounts ./deploy/prometheus/nowhere.yml, which does not exist",
        "Kafka: node ids",
    ]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)


def test_a_cluster_whose_brokers_disagree_is_caught(raw: dict[str, Any]) -> None:
    env = env_of("cluster")
    model = interpolate(raw, {**env, "HONGLING_KAFKA_BOOTSTRAP": "kafka:9092"})  # one broker named, not three
    model["services"]["kafka-3"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] = "1@kafka:9093"
    model["services"]["kafka"]["environment"]["KAFKA_MIN_INSYNC_REPLICAS"] = "3"  # no write with one broker down
    problems = compose_problems(raw, model, ["cluster"])
    assert any("kafka-3's voters" in p for p in problems), problems
    assert any("KAFKA_MIN_INSYNC_REPLICAS is 3, not 2" in p for p in problems), problems
    assert any("bootstraps from ['kafka'], not every broker" in p for p in problems), problems
    # the cluster's settings without the cluster: three copies on one broker
    assert any("3 copies on 1 broker(s)" in p for p in compose_problems(raw, interpolate(raw, env), []))


def test_the_dockerfile_copies_what_exists_from_pinned_official_images() -> None:
    assert dockerfile_problems(DOCKERFILE) == []
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "npm ci" in text and "vite build" in text  # the portal, built into the image
    assert "COPY --from=portal /portal/dist ./gateway/portal/dist" in text
    assert not any(s in text for s in SECRET_VARIABLES if f"{s}=" in text)  # names a secret, never sets one


def test_the_dockerfile_check_catches_a_missing_source_and_an_unpinned_image(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        DOCKERFILE.read_text(encoding="utf-8")
        .replace("COPY services ./services", "COPY service ./services")
        .replace("FROM python:3.11.14-slim-bookworm", "FROM python:3.11-slim")
        + "ENV HONGLING_WORKERS=4\n",
        encoding="utf-8",
    )
    problems = dockerfile_problems(broken)
    assert "Dockerfile: COPY service: no such file in the repository" in problems
    assert "Dockerfile: base image python:3.11-slim is not pinned to a release" in problems
    assert "Dockerfile: sets HONGLING_WORKERS, which no code reads" in problems


def test_no_secret_reaches_the_build_context() -> None:
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert {".env", "**/*.env", ".local", ".venv"} <= set(ignored)
