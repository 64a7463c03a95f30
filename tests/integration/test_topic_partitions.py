"""Topics made with fewer partitions than PARTITIONS (a state dir from before) are raised to it, so that more
processes of a service all get partitions of their groups (docs/runbook.md, "Scaling out")."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from services.common.settings import Settings
from services.common.topics import PARTITIONS, _raise_partitions
from tests.conftest import unique, wait_for


def test_a_topic_with_fewer_partitions_is_raised_and_one_with_as_many_is_left(infra: Settings) -> None:
    admin = KafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap, client_id="test-topic-partitions")
    fewer, enough = unique("scratch-fewer"), unique("scratch-enough")
    try:
        admin.create_topics(
            [
                NewTopic(fewer, num_partitions=3, replication_factor=1),
                NewTopic(enough, num_partitions=PARTITIONS + 2, replication_factor=1),
            ]
        )

        def counts() -> dict[str, int]:
            return {t["name"]: len(t["partitions"]) for t in admin.describe_topics([fewer, enough])}

        wait_for(lambda: counts() == {fewer: 3, enough: PARTITIONS + 2})
        _raise_partitions(admin, [fewer, enough], PARTITIONS)
        wait_for(lambda: counts() == {fewer: PARTITIONS, enough: PARTITIONS + 2})
        _raise_partitions(admin, [fewer, enough], PARTITIONS)  # nothing to do: no error
        assert counts() == {fewer: PARTITIONS, enough: PARTITIONS + 2}
    finally:
        admin.delete_topics([fewer, enough])
        admin.close()
