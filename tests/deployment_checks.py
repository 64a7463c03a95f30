"""Static checks of the deployment files against the code: docker-compose.yml, deploy/Dockerfile, deploy/systemd.

No Docker engine and no systemd are needed (neither runs here): each check reads the files and the code and
returns the problems it found, one line each, naming the file, the service and what is wrong. The tests
(tests/unit/test_compose.py, tests/unit/test_systemd_units.py) assert there are none, and that a copy broken
on purpose is caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from services.common.healthcheck import PROCESSES, port_of
from services.common.settings import ACCEPTED_SETTINGS, SECRET_SETTINGS, SERVICE_PORT_OFFSETS, Settings
from services.common.topics import min_insync_replicas

REPO = Path(__file__).resolve().parent.parent
SECRET_VARIABLES = tuple(f"HONGLING_{name.upper()}" for name in SECRET_SETTINGS)
# A rotation's other secrets (docs/runbook.md, 轮换密钥): optional, so passed as ${VAR:-} from the operator's .env.
ACCEPTED_VARIABLES = tuple(f"HONGLING_{name.upper()}" for name in ACCEPTED_SETTINGS)
# Values for the variables compose interpolates, standing in for an operator's .env (never real secrets).
FAKE_ENV = {
    **{name: f"fake-{name.lower().replace('_', '-')}-for-validation-only-0123456789" for name in SECRET_VARIABLES},
    "HONGLING_READ_DB_PASSWORD": "fake-read-db-password-for-validation-only",
}


# ---- interpolation, as Docker Compose does it ------------------------------------------------------------------


class MissingVariable(Exception):
    """A `${VAR:?message}` (or `${VAR?message}`) whose variable is unset: compose refuses to start."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


_VARIABLE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Every string in a parsed compose file with its variables replaced (`$$` is a literal `$`)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        name = match.group(2) or match.group(5)
        op, arg = match.group(3), match.group(4) or ""
        found = env.get(name)
        unset = found is None or (found == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and unset:
            raise MissingVariable(name, arg)
        if op in (":-", "-") and unset:
            return arg
        return found or ""

    return _VARIABLE.sub(one, value)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a compose --env-file (comments and blank lines skipped)."""
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def load_compose(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """The compose model after YAML (anchors and merge keys resolved) and interpolation."""
    model = interpolate(yaml.safe_load(path.read_text(encoding="utf-8")), env)
    assert isinstance(model, dict)
    return model


def enabled_services(model: Mapping[str, Any], profiles: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The services `docker compose up` starts with these profiles (a service without profiles always)."""
    wanted = set(profiles)
    return {
        name: svc for name, svc in model["services"].items() if not svc.get("profiles") or wanted & set(svc["profiles"])
    }


# ---- what the code reads and runs ------------------------------------------------------------------------------


def module_exists(module: str) -> bool:
    """`python -m module` finds it in the repository (a package's __main__ or a module file)."""
    base = REPO.joinpath(*module.split("."))
    return (base / "__main__.py").is_file() or base.with_suffix(".py").is_file()


@cache
def variables_the_code_reads(root: Path = REPO) -> frozenset[str]:
    """HONGLING_* variables the processes read: every settings field, and every name the code quotes whole
    (os.environ.get("HONGLING_PORTAL_DIR"), …). deploy/local/env.sh's own (tool paths, timeouts) are for its
    scripts, which do not run in the image."""
    names = {f"HONGLING_{field.upper()}" for field in Settings.model_fields}
    for folder in ("services", "gateway"):
        for source in (root / folder).rglob("*.py"):
            names.update(re.findall(r"""["'](HONGLING_[A-Z0-9_]+)["']""", source.read_text(encoding="utf-8")))
    return frozenset(names)


class _GivenSettings(Settings):
    """The settings from the values given alone: not from this test process's environment (make test sets
    HONGLING_* for its own stack, which must not stand in for what the compose file omits)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def settings_of(environment: Mapping[str, Any]) -> Settings:
    """The settings a process started with this environment would read (interpolated values)."""
    given = {k.removeprefix("HONGLING_").lower(): str(v) for k, v in environment.items() if k.startswith("HONGLING_")}
    return _GivenSettings(**{k: v for k, v in given.items() if k in Settings.model_fields})


def process_of(command: list[str]) -> str | None:
    """The long-running process a `python -m …` command starts (org, …, gateway, frontdoor); None for a step."""
    if command[:2] != ["python", "-m"] or len(command) < 3:
        return None
    module = command[2]
    name = {"gateway": "gateway", "gateway.frontdoor": "frontdoor"}.get(module, module.removeprefix("services."))
    return name if name in PROCESSES else None


def listening_ports(settings: Settings, process: str) -> set[int]:
    """Every port the process listens on: its gRPC (or HTTP) port, and a service's metrics port."""
    ports = {port_of(settings, process)}
    if process in SERVICE_PORT_OFFSETS:
        ports.add(settings.metrics_port(process))
    if process == "frontdoor":  # its own /metrics, on HONGLING_GATEWAY_METRICS_PORT (the monitoring work)
        assert settings.gateway_metrics_port is not None and settings.frontdoor_port is not None
        ports.add(settings.gateway_metrics_port)
        ports.add(settings.frontdoor_port)  # port_of names its health port under mutual TLS (the probe's)
    return ports


# ---- docker-compose.yml -----------------------------------------------------------------------------------------


def compose_problems(raw: Mapping[str, Any], model: Mapping[str, Any], profiles: Iterable[str]) -> list[str]:
    """What in the compose file does not match the code: modules, variables, ports, secrets, files, Kafka.

    `raw` is the file as parsed (variables not replaced: secrets are checked for how they are passed), `model`
    the same interpolated."""
    problems: list[str] = []
    services = enabled_services(model, profiles)
    known = variables_the_code_reads()
    ours = {name: svc for name, svc in services.items() if "build" in svc}  # the image of this code
    running: dict[str, tuple[str, Settings]] = {}  # compose service -> (process, settings)
    for name, svc in ours.items():
        where = f"docker-compose.yml: service {name}"
        build = svc["build"]
        if not (REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).is_file():
            problems.append(f"{where}: build names {build}, which does not exist")
        command = svc.get("command") or []
        if command[:2] != ["python", "-m"] or len(command) < 3 or not module_exists(command[2]):
            problems.append(f"{where}: command {command} does not run a module of the repository")
        for variable in svc.get("environment", {}):
            if variable.startswith("HONGLING_") and variable not in known:
                problems.append(f"{where}: sets {variable}, which no code reads")
        for variable in SECRET_VARIABLES:
            given = raw["services"][name].get("environment", {}).get(variable)
            if given is None:
                problems.append(f"{where}: does not pass {variable} (every process refuses to start without it)")
            elif not re.fullmatch(rf"\$\{{{variable}:\?[^}}]*{variable}[^}}]*\}}", str(given)):
                problems.append(f"{where}: {variable} must be ${{{variable}:?…}} (required, no default), not {given!r}")
        for variable in ACCEPTED_VARIABLES:
            given = raw["services"][name].get("environment", {}).get(variable)
            if given is None:
                problems.append(f"{where}: does not pass {variable} (a rotation could not reach this process)")
            elif str(given) != f"${{{variable}:-}}":
                problems.append(f"{where}: {variable} must be ${{{variable}:-}} (from the .env, empty by default)")
        try:
            settings = settings_of(svc.get("environment", {}))
        except ValueError as exc:  # pydantic's ValidationError
            problems.append(f"{where}: its environment is refused by the settings: {exc}")
            continue
        process = process_of(command)
        if process is not None:
            running[name] = (process, settings)
            health = (svc.get("healthcheck") or {}).get("test", [])
            if health[1:4] != ["python", "-m", "services.common.healthcheck"] or health[4:] != [process]:
                problems.append(f"{where}: healthcheck {health} does not probe {process}")
    for name, (process, settings) in running.items():
        where = f"docker-compose.yml: service {name}"
        ports = listening_ports(settings, process)
        for mapping in services[name].get("ports", []):
            container = int(str(mapping).rsplit(":", 1)[-1].split("/")[0])
            if container not in ports:
                problems.append(f"{where}: publishes port {container}, but {process} listens on {sorted(ports)}")
        for target in (*SERVICE_PORT_OFFSETS, "frontdoor"):
            if target == process or target == "frontdoor":
                continue
            address = settings.address(target)
            host, _, port = address.rpartition(":")
            found = [(n, p, s) for n, (p, s) in running.items() if n == host]
            if not found or found[0][1] != target:
                problems.append(f"{where}: reaches {target} at {address}, but no service {host!r} runs {target}")
            elif int(port) != port_of(found[0][2], target):
                problems.append(
                    f"{where}: reaches {target} at port {port}, but it listens on {port_of(found[0][2], target)}"
                )
        for url in (settings.mongo_uri, settings.read_db_url):
            for host in (h.rsplit(":", 1)[0] for h in (urlsplit(url).netloc.rpartition("@")[2]).split(",")):
                if host not in services:
                    problems.append(f"{where}: {url.split('@')[-1]} names host {host!r}, which is no service here")
    problems += _mount_problems(services)
    problems += _scrape_problems(services, running)
    problems += kafka_problems(model, profiles)
    return problems


def _mount_problems(services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    problems = []
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.get("source", "") if isinstance(volume, dict) else str(volume).split(":", 1)[0]
            if source.startswith((".", "/")) and not (REPO / source).exists():
                problems.append(f"docker-compose.yml: service {name} mounts {source}, which does not exist")
    return problems


def _scrape_problems(
    services: Mapping[str, Mapping[str, Any]], running: Mapping[str, tuple[str, Settings]]
) -> list[str]:
    """Prometheus's targets inside compose: each host:port a service and a port that service listens on."""
    problems = []
    for svc in services.values():
        for volume in svc.get("volumes", []):
            source, _, target = str(volume).partition(":")
            if not target.startswith("/etc/prometheus/prometheus.yml") or not (REPO / source).is_file():
                continue
            config = yaml.safe_load((REPO / source).read_text(encoding="utf-8")) or {}
            for job in config.get("scrape_configs", []):
                for static in job.get("static_configs", []):
                    for address in static.get("targets", []):
                        host, _, port = address.rpartition(":")
                        if host in ("localhost", "127.0.0.1"):
                            continue  # Prometheus itself
                        if host not in services:
                            problems.append(f"{source}: job {job['job_name']} scrapes {address}: no service {host!r}")
                        elif host in running and int(port) not in listening_ports(running[host][1], running[host][0]):
                            problems.append(
                                f"{source}: job {job['job_name']} scrapes {address}: {host} does not listen there"
                            )
    return problems


def kafka_problems(model: Mapping[str, Any], profiles: Iterable[str]) -> list[str]:
    """The brokers that run form one KRaft cluster, every process reaches them all, copies fit the brokers."""
    problems: list[str] = []
    services = enabled_services(model, profiles)
    brokers = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("apache/kafka:")}
    ids = {n: int(s["environment"]["KAFKA_NODE_ID"]) for n, s in brokers.items()}
    if len(set(ids.values())) != len(ids):
        problems.append(f"Kafka: node ids {ids} are not unique")
    expected_voters = {(i, n) for n, i in ids.items()}
    cluster_ids = set()
    for name, svc in brokers.items():
        env = svc["environment"]
        cluster_ids.add(env.get("CLUSTER_ID"))
        voters = {
            (int(v.split("@")[0]), v.split("@")[1].rsplit(":", 1)[0])
            for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        }
        if voters != expected_voters:
            problems.append(
                f"Kafka: {name}'s voters {sorted(voters)} are not the running brokers {sorted(expected_voters)}"
            )
        if env.get("KAFKA_ADVERTISED_LISTENERS") != f"PLAINTEXT://{name}:9092":
            problems.append(f"Kafka: {name} advertises {env.get('KAFKA_ADVERTISED_LISTENERS')}, not its own name")
        factor = int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"])
        for key in ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "KAFKA_DEFAULT_REPLICATION_FACTOR"):
            if int(env[key]) != factor:
                problems.append(f"Kafka: {name}'s {key} {env[key]} differs from its offsets topic's {factor}")
        if factor > len(brokers):
            problems.append(f"Kafka: {name} keeps {factor} copies of its own topics on {len(brokers)} broker(s)")
        for key in ("KAFKA_MIN_INSYNC_REPLICAS", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
            if int(env[key]) != min_insync_replicas(factor):
                problems.append(
                    f"Kafka: {name}'s {key} is {env[key]}, not {min_insync_replicas(factor)} for {factor} copies"
                )
    if len(cluster_ids) > 1:
        problems.append(f"Kafka: the brokers have different CLUSTER_IDs {sorted(map(str, cluster_ids))}")
    for name, svc in services.items():
        env = svc.get("environment", {})
        if "HONGLING_KAFKA_BOOTSTRAP" not in env:
            continue
        named = {a.rsplit(":", 1)[0] for a in str(env["HONGLING_KAFKA_BOOTSTRAP"]).split(",")}
        if named != set(brokers):
            problems.append(
                f"docker-compose.yml: service {name} bootstraps from {sorted(named)}, "
                f"not every broker {sorted(brokers)}"
            )
        factor = int(env.get("HONGLING_KAFKA_REPLICATION_FACTOR", 1))
        if factor > len(brokers) or (len(brokers) >= 3 and factor < 3):
            problems.append(
                f"docker-compose.yml: service {name} makes topics with {factor} copies on {len(brokers)} broker(s)"
            )
    return problems


# ---- deploy/Dockerfile ------------------------------------------------------------------------------------------


def dockerfile_problems(path: Path) -> list[str]:
    """Every COPY source (from the build context, the repository's root) exists; every base image pinned;
    every HONGLING_* it sets read by the code."""
    problems = []
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    known = variables_the_code_reads()
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "COPY" and not any(w.startswith("--from=") for w in words):
            for source in [w for w in words[1:-1] if not w.startswith("--")]:
                if not (REPO / source).exists():
                    problems.append(f"{path.name}: COPY {source}: no such file in the repository")
        if words[0] == "FROM" and not re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", words[1]):
            problems.append(f"{path.name}: base image {words[1]} is not pinned to a release")
        if words[0] == "ENV":
            for name in re.findall(r"(HONGLING_[A-Z0-9_]+)=", line):
                if name not in known:
                    problems.append(f"{path.name}: sets {name}, which no code reads")
    return problems


# ---- deploy/systemd ---------------------------------------------------------------------------------------------

SYSTEMD = REPO / "deploy" / "systemd"
INSTALLED_AT = "/opt/hongling"  # where the units expect the checkout (docs/runbook.md)


def processes_of_services_sh(path: Path) -> dict[str, str]:
    """deploy/local/services.sh's processes (its ALL list) and the module each runs (its module_of)."""
    text = path.read_text(encoding="utf-8")
    names = re.search(r"^ALL=\(([^)]*)\)", text, re.MULTILINE)
    assert names, f"{path}: no ALL=(…) list"
    special = dict(re.findall(r"^\s+(\w+)\) echo ([\w.]+) ;;", text, re.MULTILINE))
    return {name: special.get(name, f"services.{name}") for name in names.group(1).split()}


def unit_directives(path: Path) -> dict[str, list[str]]:
    """A unit file's directives, "Section.Key" -> every value in order (systemd allows repeats)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not Key=Value"
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def systemd_problems(directory: Path, services_sh: Path) -> list[str]:
    """Every process of services.sh has a unit the target wants, supervised (restart on failure, soon), with the
    secrets from a required environment file, the venv's Python, and ordered after the stack and its set-up."""
    problems = []
    target = unit_directives(directory / "hongling.target")
    wanted = " ".join(target.get("Unit.Wants", [])).split()
    template = unit_directives(directory / "hongling@.service")
    for name, module in processes_of_services_sh(services_sh).items():
        if f"hongling@{module}.service" not in wanted:
            problems.append(f"hongling.target: does not want hongling@{module}.service ({name} of services.sh)")
        if not module_exists(module):
            problems.append(f"services.sh: {name} runs {module}, which is no module of the repository")
    for unit in wanted:
        if unit.startswith("hongling@") and not module_exists(unit.removeprefix("hongling@").removesuffix(".service")):
            problems.append(f"hongling.target: wants {unit}, which runs no module of the repository")
    if template.get("Service.Restart") != ["on-failure"]:
        problems.append(f"hongling@.service: Restart={template.get('Service.Restart')}, not on-failure")
    delay = (template.get("Service.RestartSec") or ["100ms"])[-1]
    if not re.fullmatch(r"(\d+(\.\d+)?)(ms|s)?", delay) or (
        delay.endswith("s") and not delay.endswith("ms") and float(delay[:-1]) > 5
    ):
        problems.append(f"hongling@.service: RestartSec={delay}: a crashed process must be back within seconds")
    for unit in ("hongling@.service", "hongling-init.service"):
        directives = unit_directives(directory / unit)
        files = directives.get("Service.EnvironmentFile", [])
        if "/etc/hongling/secrets.env" not in files:
            problems.append(f"{unit}: the secrets' EnvironmentFile /etc/hongling/secrets.env is missing or optional")
        for line in directives.get("Service.ExecStart", []):
            if f"{INSTALLED_AT}/.venv/bin/python -m" not in line:
                problems.append(f"{unit}: ExecStart does not run the venv's Python: {line}")
            if re.search(r"HONGLING_\w+=", line):
                problems.append(f"{unit}: ExecStart sets a variable itself (secrets come from the file): {line}")
        after = " ".join(directives.get("Unit.After", [])).split()
        if "hongling-stack.service" not in after:
            problems.append(f"{unit}: not ordered after hongling-stack.service")
    if "hongling-init.service" not in " ".join(template.get("Unit.After", [])).split():
        problems.append("hongling@.service: not ordered after hongling-init.service")
    return problems


def render_units(directory: Path, into: Path, modules: Iterable[str]) -> list[Path]:
    """The units with this checkout in place of /opt/hongling, each process an instance of the template (a link,
    as `systemctl enable hongling@…` makes), ready for `systemd-analyze verify`."""
    made = []
    for unit in directory.iterdir():
        if unit.is_file() and unit.suffix in (".service", ".target"):
            (into / unit.name).write_text(unit.read_text(encoding="utf-8").replace(INSTALLED_AT, str(REPO)))
            if "@." not in unit.name:
                made.append(into / unit.name)
    for module in modules:
        link = into / f"hongling@{module}.service"
        link.symlink_to(into / "hongling@.service")
        made.append(link)
    return made
