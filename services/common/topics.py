"""Creates the project's Kafka topics with explicit partitions (python -m services.common.topics)."""

from __future__ import annotations

import sys
import time

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from services.common.events import dead_letter_topic, state_topic_for, topic_for
from services.common.settings import SERVICES, get_settings

# A consumer group shares a topic's partitions among its members, one member per partition at most: a group can
# use as many members as the topic has partitions, the rest stand by. Dispatch runs 3 members of its group in a
# process (services/dispatch/consumer.py THREADS), so two dispatch processes need 6 to both get work; a group of
# one member per process uses up to 6 processes (docs/runbook.md, "Scaling out";
# tests/e2e/test_scale_out.py). Topics made with fewer (a state dir from before) are raised to this.
PARTITIONS = 6


# Services whose relay publishes its aggregates' states for the read models (compacted topics: the latest
# state of each aggregate is kept for as long as the topic lives, so a rebuild finds every aggregate).
STATE_SERVICES = ("intake", "dispatch", "alliance", "evaluation", "publication")
COMPACTED = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "3600000"}
# The services' event topics are the history evaluation's measures are rebuilt from (python -m
# services.evaluation.measures --rebuild replays them from the start): kept for ever, not the broker's 7 days.
KEPT = {"retention.ms": "-1"}

# Consumer groups with a dead-letter topic of their own, besides one per service name.
EXTRA_GROUPS = (
    "intake-lifecycle",
    "dispatch-matching",
    "dispatch-webhooks",
    "alliance-timebank",
    "evaluation-measures",
    # evaluation's ratings area: the issues' verdicts from TaskVerified / TaskVerificationFailed
    "evaluation-ratings",
    # publication's boards area: BoardsFrozen from evaluation
    "publication-boards",
)


def wanted_topics() -> list[str]:
    groups = [*SERVICES, *EXTRA_GROUPS]
    return (
        [topic_for(s) for s in SERVICES]
        + [dead_letter_topic(g) for g in groups]
        + [state_topic_for(s) for s in STATE_SERVICES]
    )


def topic_configs(name: str) -> dict[str, str]:
    if name in {state_topic_for(s) for s in STATE_SERVICES}:
        return dict(COMPACTED)
    if name in {topic_for(s) for s in SERVICES}:
        return dict(KEPT)
    return {}


def min_insync_replicas(replication_factor: int) -> int:
    """Copies a write needs before acks=all answers: all but one (one broker may be down), at least one."""
    return max(1, replication_factor - 1)


def replicated_configs(name: str, replication_factor: int) -> dict[str, str]:
    """A topic's configuration with, on a cluster, the in-sync copies every acknowledged write must reach."""
    configs = topic_configs(name)
    if replication_factor > 1:
        configs["min.insync.replicas"] = str(min_insync_replicas(replication_factor))
    return configs


def _wait_for_brokers(admin: KafkaAdminClient, replication_factor: int, deadline: float) -> None:
    """A cluster's brokers join one by one: wait until there are enough for every copy of a topic."""
    while True:
        found = admin.describe_cluster().get("brokers", [])
        brokers = len([b for b in found if not b.get("is_fenced")])  # a fenced broker takes no copies
        if brokers >= replication_factor:
            return
        if time.monotonic() > deadline:
            raise SystemExit(
                f"HONGLING_KAFKA_REPLICATION_FACTOR={replication_factor} but the cluster has {brokers} broker(s): "
                "start the others (docker compose's `cluster` profile) or lower the factor"
            )
        time.sleep(1)


def ensure_topics(
    bootstrap: str, partitions: int = PARTITIONS, timeout: float = 60.0, replication_factor: int = 1
) -> list[str]:
    """Create missing topics; returns the ones created. Retries while the broker is still starting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="hongling-topics")
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"cannot reach Kafka at {bootstrap}: {exc}") from None
            time.sleep(1)
    try:
        _wait_for_brokers(admin, replication_factor, deadline)
        existing = set(admin.list_topics())
        missing = [t for t in wanted_topics() if t not in existing]
        _keep_event_history(admin, [t for t in wanted_topics() if t in existing])
        _raise_partitions(admin, [t for t in wanted_topics() if t in existing], partitions)
        created = []
        for i, name in enumerate(missing, 1):
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=partitions,
                            replication_factor=replication_factor,
                            topic_configs=replicated_configs(name, replication_factor),
                        )
                    ]
                )
                created.append(name)
                print(f"[topics {i}/{len(missing)}] created {name} ({partitions} partitions)", flush=True)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def _keep_event_history(admin: KafkaAdminClient, existing: list[str]) -> None:
    """Topics made before their settings were (a state dir from an earlier version): set them once."""
    kept = [t for t in existing if topic_configs(t) == KEPT]
    if not kept:
        return
    found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in kept]).get("topic", {})
    stale = [t for t in kept if found.get(t, {}).get("retention.ms", {}).get("value") != KEPT["retention.ms"]]
    if stale:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs=dict(KEPT)) for t in stale])
        print(f"[topics] {len(stale)} event topic(s) now kept for ever (retention.ms=-1)", flush=True)


def _raise_partitions(admin: KafkaAdminClient, existing: list[str], partitions: int) -> None:
    """Topics with fewer partitions than `partitions` get more (Kafka never lowers a topic's count). A key's
    records go to another partition from then on, so an aggregate's next events may be read by another member
    than its earlier ones: raise it while the consumers are caught up (`make up` runs this before the services
    start). Compacted state topics keep an aggregate's old state on its old partition too; the projector keeps
    only the newer version, whichever it reads first."""
    if not existing:
        return
    found = {t["name"]: len(t.get("partitions") or ()) for t in admin.describe_topics(existing)}
    fewer = {t: partitions for t, n in found.items() if 0 < n < partitions}
    if fewer:
        admin.create_partitions(fewer)
        print(f"[topics] {len(fewer)} topic(s) raised to {partitions} partitions", flush=True)


def main() -> int:
    settings = get_settings()
    created = ensure_topics(settings.kafka_bootstrap, replication_factor=settings.kafka_replication_factor)
    print(f"[topics] {len(wanted_topics())} topics ready ({len(created)} new) on {settings.kafka_bootstrap}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
