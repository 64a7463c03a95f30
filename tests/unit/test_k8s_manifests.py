"""deploy/k8s: both overlays render with kustomize (built from its pinned Go module, deploy/k8s/kustomize.sh),
every rendered Kubernetes object passes the Kubernetes schemas of kubernetes-validate (offline, strict: an
unknown field is an error), the Strimzi resources pass the CRD schemas of the pinned Strimzi release
(deploy/k8s/strimzi), and what is rendered is what the system needs: every topic, every process with its
probes and ports, secrets only by reference, and NetworkPolicies that let exactly the intended pods talk."""

from __future__ import annotations

import copy
import importlib.util
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from services.common import topics
from services.common.settings import ACCEPTED_SETTINGS, SECRET_SETTINGS, Settings

# The first run builds kustomize from its module (a few minutes on a fresh machine); later runs take seconds.
pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
# The Kubernetes release whose API the manifests are written for (kubernetes-validate ships its schemas).
KUBERNETES_VERSION = "1.32"
STRIMZI_CRDS = {
    "Kafka": "040-Crd-kafka.yaml",
    "KafkaTopic": "043-Crd-kafkatopic.yaml",
    "KafkaNodePool": "045-Crd-kafkanodepool.yaml",
}
NAMESPACE = "hongling"
SERVICES = ("org", "intake", "dispatch", "evaluation", "publication", "alliance", "projector")
EDGE = ("gateway", "frontdoor")
PROCESSES = (*SERVICES, *EDGE)
MODULES = {**{s: f"services.{s}" for s in SERVICES}, "gateway": "gateway", "frontdoor": "gateway.frontdoor"}
SECRET_NAME = "hongling-secrets"

Obj = dict[str, Any]


@cache
def rendered(overlay: str) -> tuple[Obj, ...]:
    run = subprocess.run(
        ["bash", str(K8S / "kustomize.sh"), "build", overlay], capture_output=True, text=True, timeout=880
    )
    assert run.returncode == 0, f"kustomize build {overlay} failed:\n{run.stderr}"
    return tuple(d for d in yaml.safe_load_all(run.stdout) if d)


def objects(overlay: str, kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in rendered(overlay) if o["kind"] == kind}


def config(overlay: str) -> dict[str, str]:
    (cm,) = objects(overlay, "ConfigMap").values()
    assert cm["metadata"]["name"].startswith("hongling-config-")
    return dict(cm["data"])


def container(deployment: Obj) -> Obj:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(c)


def ports(deployment: Obj) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}


# ---- the Kubernetes schemas -----------------------------------------------------------------------------------


def kubernetes_errors(obj: Obj) -> str | None:
    """kubernetes-validate's complaint about one object (strict schemas of KUBERNETES_VERSION), or None."""
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{'.'.join(str(p) for p in exc.path)}: {exc.message}"
    return None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_kubernetes_object_passes_the_kubernetes_schemas(overlay: str) -> None:
    checked = 0
    for obj in rendered(overlay):
        if obj["kind"] in STRIMZI_CRDS:
            continue
        try:
            error = kubernetes_errors(obj)
        except SchemaNotFoundError as exc:
            pytest.fail(f"{overlay}: no schema for {obj['kind']} {obj['apiVersion']}: {exc.message}")
        assert error is None, f"{overlay}: {obj['kind']}/{obj['metadata']['name']}: {error}"
        checked += 1
    kinds = {o["kind"] for o in rendered(overlay)}
    assert {"Deployment", "Service", "NetworkPolicy", "ConfigMap", "EndpointSlice", "Namespace"} <= kinds
    assert checked >= 30


def test_the_kubernetes_schemas_reject_a_broken_object() -> None:
    """The check above can fail: a misspelt field, a wrongly typed value and a bad probe are each refused."""
    deployment = objects("prod", "Deployment")["intake"]
    assert kubernetes_errors(deployment) is None
    misspelt = copy.deepcopy(deployment)
    container(misspelt)  # one container, as every Deployment here
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"grpc": {"port": 7052}}
    typed = copy.deepcopy(deployment)
    typed["spec"]["replicas"] = "two"
    probe = copy.deepcopy(deployment)
    probe["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"] = {"service": "x"}  # no port
    hpa = copy.deepcopy(objects("prod", "HorizontalPodAutoscaler")["intake"])
    del hpa["spec"]["scaleTargetRef"]["kind"]
    for broken in (misspelt, typed, probe, hpa):
        assert kubernetes_errors(broken) is not None


# ---- the Strimzi resources ------------------------------------------------------------------------------------


def _closed(schema: Any) -> Any:
    """The CRD schema with unknown fields refused where it lists the fields (the API server prunes them
    silently; `kubectl apply --validate=strict` refuses them, and so does this test)."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


@cache
def strimzi_validator(kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((K8S / "strimzi" / STRIMZI_CRDS[kind]).read_text(encoding="utf-8"))
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = _closed(version["schema"]["openAPIV3Schema"])
    # metadata is the API server's to check (kubernetes-validate has no schema for it outside a known kind)
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def strimzi_errors(obj: Obj) -> list[str]:
    group, _, version = obj["apiVersion"].partition("/")
    errors = [] if (group, version) == ("kafka.strimzi.io", "v1") else [f"apiVersion {obj['apiVersion']}"]
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", obj["metadata"]["name"]):
        errors.append(f"name {obj['metadata']['name']!r} is not a DNS subdomain")
    for err in strimzi_validator(obj["kind"]).iter_errors(obj):
        errors.append(f"{'.'.join(str(p) for p in err.absolute_path)}: {err.message}")
    return errors


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_strimzi_resources_pass_the_strimzi_crds(overlay: str) -> None:
    found = [o for o in rendered(overlay) if o["kind"] in STRIMZI_CRDS]
    assert {o["kind"] for o in found} == set(STRIMZI_CRDS)
    for obj in found:
        errors = strimzi_errors(obj)
        assert not errors, f"{overlay}: {obj['kind']}/{obj['metadata']['name']}: {errors}"
        if obj["kind"] != "Kafka":
            assert obj["metadata"]["labels"]["strimzi.io/cluster"] in objects(overlay, "Kafka")


def test_the_strimzi_crds_reject_a_broken_resource() -> None:
    topic = copy.deepcopy(objects("prod", "KafkaTopic")["hongling.intake.v1"])
    assert strimzi_errors(topic) == []
    misspelt = copy.deepcopy(topic)
    misspelt["spec"]["replica"] = misspelt["spec"].pop("replicas")
    typed = copy.deepcopy(topic)
    typed["spec"]["partitions"] = "three"
    pool = copy.deepcopy(objects("prod", "KafkaNodePool")["dual-role"])
    pool["spec"]["roles"] = ["broker", "leader"]
    kafka = copy.deepcopy(objects("prod", "Kafka")["hongling"])
    del kafka["spec"]["kafka"]["listeners"][0]["tls"]
    for broken in (misspelt, typed, pool, kafka):
        assert strimzi_errors(broken), broken["kind"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_topic_of_the_code_has_its_kafka_topic(overlay: str) -> None:
    kafka_topics = objects(overlay, "KafkaTopic")
    by_topic = {t["spec"].get("topicName", name): t for name, t in kafka_topics.items()}
    assert sorted(by_topic) == sorted(topics.wanted_topics()), (
        "deploy/k8s/base/kafka-topics.yaml differs from services/common/topics.py: "
        "run .venv/bin/python deploy/k8s/topics.py > deploy/k8s/base/kafka-topics.yaml"
    )
    for name, topic in by_topic.items():
        assert topic["spec"]["replicas"] == 3, name
        assert topic["spec"]["partitions"] == topics.PARTITIONS, f"{name}: regenerate (deploy/k8s/topics.py)"
        assert {k: str(v) for k, v in topic["spec"].get("config", {}).items()} == topics.topic_configs(name), name
    # the kept and compacted settings did reach the resources
    assert by_topic["hongling.intake.v1"]["spec"]["config"]["retention.ms"] == "-1"
    assert by_topic["hongling.intake.state.v1"]["spec"]["config"]["cleanup.policy"] == "compact"


def test_the_committed_topics_are_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("k8s_topics", K8S / "topics.py")
    assert spec and spec.loader
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    committed = (K8S / "base" / "kafka-topics.yaml").read_text(encoding="utf-8")
    assert committed == generator.render(), (
        "deploy/k8s/base/kafka-topics.yaml is stale: run "
        ".venv/bin/python deploy/k8s/topics.py > deploy/k8s/base/kafka-topics.yaml"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_is_a_kraft_cluster_of_three_the_services_reach(overlay: str) -> None:
    (kafka,) = objects(overlay, "Kafka").values()
    (pool,) = objects(overlay, "KafkaNodePool").values()
    assert pool["spec"]["replicas"] == 3
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    settings = kafka["spec"]["kafka"]["config"]
    assert settings["default.replication.factor"] == 3 and settings["min.insync.replicas"] == 2
    assert settings["auto.create.topics.enable"] is False
    assert "topicOperator" in kafka["spec"]["entityOperator"]
    (plain,) = [ln for ln in kafka["spec"]["kafka"]["listeners"] if ln["name"] == "plain"]
    name = kafka["metadata"]["name"]
    assert config(overlay)["HONGLING_KAFKA_BOOTSTRAP"] == f"{name}-kafka-bootstrap:{plain['port']}"


# ---- the processes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_process_runs_with_its_ports_probes_and_limits(overlay: str) -> None:
    deployments = objects(overlay, "Deployment")
    services = objects(overlay, "Service")
    env = config(overlay)
    assert sorted(deployments) == sorted(PROCESSES)
    for name, dep in deployments.items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == name and labels["app.kubernetes.io/part-of"] == "hongling"
        assert dep["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}
        c = container(dep)
        assert c["command"] == ["python", "-m", MODULES[name]], name
        assert c["image"].rsplit("/", 1)[-1].startswith("hongling:"), f"{name}: the overlay pins the image's tag"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), name
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert c["envFrom"] == [{"configMapRef": {"name": next(iter(objects(overlay, "ConfigMap")))}}]
        p = ports(dep)
        if name == "gateway":
            assert p == {"http": int(env["HONGLING_GATEWAY_PORT"])}
            assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
            scraped = p["http"]
        else:
            grpc = int(env[f"HONGLING_{name.upper()}_PORT"])
            assert p["grpc"] == grpc, name
            # ready: gRPC health SERVING; alive: the port answers (health is NOT_SERVING while a database is
            # down, and restarting the pod would not bring the database back). The front door serves mutual TLS,
            # which the kubelet's probe cannot speak: its health alone is in plaintext on its health port.
            health = p.pop("health") if name == "frontdoor" else grpc
            assert c["readinessProbe"]["grpc"] == {"port": health}, name
            for probe in ("startupProbe", "livenessProbe"):
                assert c[probe]["tcpSocket"]["port"] == "grpc", f"{name} {probe}"
            # the front door's own metrics are on the gateway's metrics port setting (a process of its own)
            metrics_key = "GATEWAY" if name == "frontdoor" else name.upper()
            scraped = int(env[f"HONGLING_{metrics_key}_METRICS_PORT"])
            assert p == {"grpc": grpc, "metrics": scraped}, name
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == str(scraped), name
        assert annotations["prometheus.io/path"] == "/metrics", name
        svc = services[name]
        assert svc["spec"]["selector"] == {"app.kubernetes.io/name": name}
        assert {sp["targetPort"] for sp in svc["spec"]["ports"]} == set(p)  # the probe's health port is not in it


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_front_door_serves_mutual_tls_from_the_operators_secret(overlay: str) -> None:
    dep = objects(overlay, "Deployment")["frontdoor"]
    c = container(dep)
    env = {e["name"]: e.get("value") for e in c["env"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert env["HONGLING_FRONTDOOR_TLS"] == "mtls"
    assert env["HONGLING_FRONTDOOR_TLS_DIR"] == mounts["frontdoor-tls"]
    assert volumes["frontdoor-tls"]["secret"] == {"secretName": "hongling-frontdoor-tls"}  # referenced, required
    for var in ("HONGLING_FRONTDOOR_CLIENT_CA", "HONGLING_FRONTDOOR_CLIENTS_FILE"):
        assert str(env[var]).startswith(mounts["frontdoor-clients"] + "/"), var
    assert volumes["frontdoor-clients"]["configMap"] == {"name": "hongling-frontdoor-clients"}
    assert int(str(env["HONGLING_FRONTDOOR_HEALTH_PORT"])) == ports(dep)["health"]
    # the settings a front door pod gets ask for mutual TLS
    secrets = {s: "k8s-test-" + "s" * 32 + s for s in SECRET_SETTINGS}
    values = {**config(overlay), **{k: v for k, v in env.items() if v is not None}}
    settings = Settings(
        **secrets, **{k.removeprefix("HONGLING_").lower(): v for k, v in values.items() if k.startswith("HONGLING_")}
    )
    assert settings.frontdoor_mtls() and settings.host == "0.0.0.0"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_terminates_tls_for_the_http_api_and_passes_the_front_door_through(overlay: str) -> None:
    ingresses = objects(overlay, "Ingress")
    assert sorted(ingresses) == ["frontdoor", "gateway"]
    http = ingresses["gateway"]["spec"]
    hosts = {r["host"] for r in http["rules"]}
    assert [t["secretName"] for t in http["tls"]] == ["hongling-gateway-tls"]  # by reference: no Secret rendered
    assert hosts == {h for t in http["tls"] for h in t["hosts"]}, "every host of the HTTP API is served with TLS"
    assert ingresses["gateway"]["metadata"]["annotations"]["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    backends = {p["backend"]["service"]["name"] for r in http["rules"] for p in r["http"]["paths"]}
    assert backends == {"gateway"}
    door = ingresses["frontdoor"]
    assert door["metadata"]["annotations"]["nginx.ingress.kubernetes.io/ssl-passthrough"] == "true"
    assert {p["backend"]["service"]["port"]["name"] for r in door["spec"]["rules"] for p in r["http"]["paths"]} == {
        "grpc"
    }
    if overlay == "prod":
        assert "cert-manager.io/cluster-issuer" in ingresses["gateway"]["metadata"]["annotations"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_settings_are_known_and_each_address_names_a_service(overlay: str) -> None:
    env = config(overlay)
    fields = set(Settings.model_fields)
    for key in env:
        if key.startswith("HONGLING_"):
            assert key.removeprefix("HONGLING_").lower() in fields, (
                f"{key}: no such setting (services/common/settings.py)"
            )
    services = objects(overlay, "Service")
    for name in SERVICES:
        host, _, port = env[f"HONGLING_{name.upper()}_ADDR"].partition(":")
        assert int(port) in {sp["port"] for sp in services[host]["spec"]["ports"]}, name
        assert services[host]["spec"]["selector"]["app.kubernetes.io/name"] == name
    # the settings load from this ConfigMap as a pod would get it (secrets aside)
    secrets = {f"HONGLING_{s.upper()}": "k8s-test-" + "s" * 32 + s for s in SECRET_SETTINGS}
    settings = Settings(
        **{k.removeprefix("HONGLING_").lower(): v for k, v in {**env, **secrets}.items() if k.startswith("HONGLING_")}
    )
    assert settings.address("intake") == "intake:7052" and settings.metrics_port("projector") == 9156


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_only_referenced(overlay: str) -> None:
    assert not objects(overlay, "Secret"), "no Secret is rendered: the operator creates hongling-secrets"
    wanted = {f"HONGLING_{s.upper()}" for s in SECRET_SETTINGS} | {"PGPASSWORD"}
    for name, dep in objects(overlay, "Deployment").items():
        env = {e["name"]: e for e in container(dep).get("env", [])}
        for var in wanted:
            ref = env[var]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == SECRET_NAME and "optional" not in ref, f"{name} {var}"
        for var in (f"HONGLING_{s.upper()}" for s in ACCEPTED_SETTINGS):  # a rotation's other secret: optional
            ref = env[var]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == SECRET_NAME and ref["optional"] is True, f"{name} {var}"
        for e in env.values():
            if re.search(r"SECRET|KEY|PASSWORD", e["name"]):
                assert "value" not in e, f"{name}: {e['name']} has a value in the manifests"
    for key in config(overlay):
        assert not re.search(r"SECRET|_KEY$|PASSWORD", key), key
    assert urlsplit(config(overlay)["HONGLING_READ_DB_URL"]).password is None, "the password comes from PGPASSWORD"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_databases_are_external_services(overlay: str) -> None:
    env = config(overlay)
    services = objects(overlay, "Service")
    slices = objects(overlay, "EndpointSlice")
    mongo = urlsplit(env["HONGLING_MONGO_URI"])
    assert parse_qs(mongo.query)["replicaSet"] == ["rs0"]
    members = [h.split(":")[0] for h in mongo.netloc.split(",")]
    assert len(members) == 3
    for host in members:
        assert services[host]["spec"]["type"] == "ExternalName" and services[host]["spec"]["externalName"], host
    read = urlsplit(env["HONGLING_READ_DB_URL"])
    assert read.hostname == "postgres-primary", "the read side reads and writes the primary"
    for name in ("postgres-primary", "postgres-replica"):
        assert "selector" not in services[name]["spec"], name
        (eps,) = [s for s in slices.values() if s["metadata"]["labels"]["kubernetes.io/service-name"] == name]
        assert eps["endpoints"][0]["addresses"], name
        assert eps["ports"][0]["port"] == services[name]["spec"]["ports"][0]["port"], name


def test_dev_runs_one_of_each_and_prod_scales_with_budgets() -> None:
    for dep in objects("dev", "Deployment").values():
        assert dep["spec"]["replicas"] == 1
    assert not objects("dev", "HorizontalPodAutoscaler") and not objects("dev", "PodDisruptionBudget")
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in objects("prod", "HorizontalPodAutoscaler").values()}
    pdbs = objects("prod", "PodDisruptionBudget").values()
    for name, dep in objects("prod", "Deployment").items():
        assert dep["spec"]["replicas"] >= 2, name
        hpa = hpas[name]
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment" and hpa["spec"]["minReplicas"] >= 2
        assert hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        (pdb,) = [p for p in pdbs if selects(p["spec"]["selector"], labels)]
        assert pdb["spec"]["minAvailable"] == 1, name
        dev = container(objects("dev", "Deployment")[name])["resources"]["requests"]
        assert quantity(dev["cpu"]) < quantity(container(dep)["resources"]["requests"]["cpu"]), name
    # one consumer per partition at most: more projectors than partitions would idle
    assert hpas["projector"]["spec"]["maxReplicas"] <= topics.PARTITIONS


def quantity(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


# ---- the network policies -------------------------------------------------------------------------------------


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against a set of labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


Source = tuple[str | None, dict[str, str]]  # (namespace, pod labels); namespace None: outside the cluster


def allowed(objs: tuple[Obj, ...], source: Source, target: str, port: str) -> bool:
    """Whether the NetworkPolicies among `objs` let `source` open a connection to `target`'s named port."""
    (dep,) = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == target]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    number = ports(dep)[port]
    policies = [
        p
        for p in objs
        if p["kind"] == "NetworkPolicy"
        and "Ingress" in p["spec"]["policyTypes"]
        and selects(p["spec"]["podSelector"], labels)
    ]
    if not policies:
        return True
    src_ns, src_labels = source
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            if rule.get("ports") and not any(rp["port"] in (port, number) for rp in rule["ports"]):
                continue
            if "from" not in rule:
                return True
            for peer in rule["from"]:
                if "ipBlock" in peer:
                    if src_ns is None:
                        return True
                    continue
                if src_ns is None:
                    continue
                ns_ok = (
                    selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": src_ns})
                    if "namespaceSelector" in peer
                    else src_ns == NAMESPACE
                )
                pod_ok = selects(peer["podSelector"], src_labels) if "podSelector" in peer else True
                if ns_ok and pod_ok:
                    return True
    return False


def pod(name: str) -> Source:
    return NAMESPACE, {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "hongling"}


INGRESS: Source = ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
PROMETHEUSES: tuple[Source, ...] = (
    ("monitoring", {"app.kubernetes.io/name": "prometheus"}),  # cluster-wide
    (NAMESPACE, {"app.kubernetes.io/name": "prometheus"}),  # beside Hongling (deploy/prometheus/prometheus.k8s.yml)
)
INTERNET: Source = (None, {})
STRANGERS: tuple[Source, ...] = (
    INTERNET,
    ("default", {"app.kubernetes.io/name": "gateway"}),  # a look-alike in another namespace
    (NAMESPACE, {"app.kubernetes.io/name": "debug-shell"}),  # an unknown pod in Hongling's namespace
    ("monitoring", {"app.kubernetes.io/name": "grafana"}),
)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_exactly_the_intended_pods_talk(overlay: str) -> None:
    objs = rendered(overlay)
    # from outside: the gateway's HTTP and the front door's gRPC, through the ingress controller only
    assert allowed(objs, INGRESS, "gateway", "http")
    assert allowed(objs, INGRESS, "frontdoor", "grpc")
    for name in SERVICES:
        assert not allowed(objs, INGRESS, name, "grpc"), name
        assert not allowed(objs, INGRESS, name, "metrics"), name
    # the services: from the gateway, the front door and each other
    for name in SERVICES:
        for caller in PROCESSES:
            assert allowed(objs, pod(caller), name, "grpc"), f"{caller} -> {name}"
    # nobody else reaches anything, the edge included
    for name, dep in objects(overlay, "Deployment").items():
        for port in ports(dep):
            for stranger in STRANGERS:
                assert not allowed(objs, stranger, name, port), f"{stranger} -> {name}:{port}"
    # Prometheus scrapes every metrics endpoint, and none of the services' gRPC
    for prometheus in PROMETHEUSES:
        for name, dep in objects(overlay, "Deployment").items():
            annotations = dep["spec"]["template"]["metadata"]["annotations"]
            (port,) = [n for n, num in ports(dep).items() if str(num) == annotations["prometheus.io/port"]]
            assert allowed(objs, prometheus, name, port), f"{prometheus} -> {name}:{port}"
        for name in (*SERVICES, "frontdoor"):
            assert not allowed(objs, prometheus, name, "grpc"), name


def test_the_reachability_check_sees_a_widened_policy() -> None:
    """The check above can fail: a policy opening the services to every namespace, or a lost default deny."""
    objs = rendered("prod")
    assert not allowed(objs, ("default", {}), "intake", "grpc")
    assert not allowed(objs, INTERNET, "publication", "metrics")
    widened = []
    for o in objs:
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "services-from-hongling":
            o = copy.deepcopy(o)
            o["spec"]["ingress"][0]["from"].append({"namespaceSelector": {}})
        widened.append(o)
    assert allowed(tuple(widened), ("default", {}), "intake", "grpc")
    # without any policy selecting a pod, everything reaches it
    no_policies = tuple(o for o in objs if o["kind"] != "NetworkPolicy")
    assert allowed(no_policies, INTERNET, "publication", "metrics")
