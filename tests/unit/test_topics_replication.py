"""How many copies the topics get, and how many of them an acknowledged write must reach."""

from __future__ import annotations

from services.common.events import state_topic_for, topic_for
from services.common.settings import Settings
from services.common.topics import min_insync_replicas, replicated_configs, topic_configs, wanted_topics


def test_on_one_broker_the_topics_are_made_exactly_as_before() -> None:
    assert all(replicated_configs(t, 1) == topic_configs(t) for t in wanted_topics())


def test_on_three_brokers_a_write_must_reach_two_copies_and_each_topic_keeps_its_own_settings() -> None:
    assert min_insync_replicas(3) == 2
    assert replicated_configs(topic_for("intake"), 3) == {"retention.ms": "-1", "min.insync.replicas": "2"}
    state = replicated_configs(state_topic_for("dispatch"), 3)
    assert state["cleanup.policy"] == "compact" and state["min.insync.replicas"] == "2"


def test_two_copies_still_accept_writes_with_one_broker_down() -> None:
    assert min_insync_replicas(2) == 1


def test_the_factor_is_a_setting_that_defaults_to_one(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in ("PRINCIPAL_SECRET", "DATA_KEY", "AUDIT_SIGNING_KEY", "SESSION_SECRET"):
        monkeypatch.setenv(f"HONGLING_{name}", f"{name.lower()}-0123456789abcdefghijklmnopqrstuvwxyz")
    assert Settings().kafka_replication_factor == 1
    monkeypatch.setenv("HONGLING_KAFKA_REPLICATION_FACTOR", "3")
    assert Settings().kafka_replication_factor == 3
