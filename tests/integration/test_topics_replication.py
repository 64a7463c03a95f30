"""Topics made for a cluster: the tool refuses a replication factor the running brokers cannot hold."""

from __future__ import annotations

import pytest

from services.common.topics import ensure_topics
from tests.conftest import System


def test_a_replication_factor_above_the_running_brokers_stops_naming_the_variable(system: System) -> None:
    # The test stack runs one broker: three copies of a topic cannot be placed. The tool says so (and what to do)
    # instead of Kafka's bare INVALID_REPLICATION_FACTOR on the first topic.
    with pytest.raises(SystemExit) as stopped:
        ensure_topics(system.settings.kafka_bootstrap, timeout=3, replication_factor=3)
    assert "HONGLING_KAFKA_REPLICATION_FACTOR=3" in str(stopped.value)
    assert "has 1 broker(s)" in str(stopped.value)
