"""The services' event topics are kept for ever: they are the history evaluation's measures are rebuilt from."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from services.common.events import state_topic_for, topic_for
from services.common.settings import SERVICES
from services.common.topics import ensure_topics
from tests.conftest import System, wait_for


@pytest.fixture
def admin(system: System) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=system.settings.kafka_bootstrap, client_id="test-topics")
    yield client
    client.close()


def retention(admin: KafkaAdminClient, topic: str) -> str | None:
    found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)]).get("topic", {})
    value = found.get(topic, {}).get("retention.ms", {}).get("value")
    return None if value is None else str(value)


def test_every_event_topic_is_kept_for_ever_and_state_topics_are_compacted(admin: KafkaAdminClient) -> None:
    assert {s: retention(admin, topic_for(s)) for s in SERVICES} == {s: "-1" for s in SERVICES}
    found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, state_topic_for("evaluation"))])
    assert found["topic"][state_topic_for("evaluation")]["cleanup.policy"]["value"] == "compact"


def test_a_topic_made_with_the_brokers_retention_is_set_to_keep_its_history(
    system: System, admin: KafkaAdminClient
) -> None:
    topic = topic_for("publication")
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "604800000"})])
    # A topic's configuration reaches the broker's metadata a moment after the controller took the change (KRaft):
    # read until it shows.
    wait_for(lambda: retention(admin, topic) == "604800000")  # as a state dir from an earlier version has it
    ensure_topics(system.settings.kafka_bootstrap)
    wait_for(lambda: retention(admin, topic) == "-1")
