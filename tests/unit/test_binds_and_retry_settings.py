"""Servers bind loopback unless configured; a stage's retry schedule comes from its environment."""
from __future__ import annotations

import pytest

from services.cdshooks.config import CdsSettings
from services.core.bus.policy import RETRY_BACKOFF_S, RetryPolicy
from services.core.bus.service import StageHost, metrics_host
from services.core.config import ConfigError


def test_stage_metrics_and_cds_hooks_bind_loopback_by_default():
    assert metrics_host({}) == "127.0.0.1"
    assert metrics_host({"VIGIL_METRICS_HOST": "0.0.0.0"}) == "0.0.0.0"
    assert StageHost.__init__.__kwdefaults__["host"] == "127.0.0.1"
    assert CdsSettings.from_env({}, "http://ehr").host == "127.0.0.1"
    assert CdsSettings.from_env({"VIGIL_CDS_HOST": "0.0.0.0"}, "http://ehr").host == "0.0.0.0"


def test_retry_schedule_from_the_environment():
    base = RetryPolicy()
    assert base.with_env({}) == base and base.retry_backoff_s == RETRY_BACKOFF_S
    drill = base.with_env({"VIGIL_RETRY_BACKOFF_S": "1, 2", "VIGIL_RETRY_QUICK_ATTEMPTS": "1"})
    assert drill.retry_backoff_s == (1.0, 2.0) and drill.quick_attempts == 1 and drill.levels == 2
    assert drill.quick_wait_initial_s == base.quick_wait_initial_s


@pytest.mark.parametrize("env", [{"VIGIL_RETRY_BACKOFF_S": "5,x"}, {"VIGIL_RETRY_BACKOFF_S": "-1"},
                                 {"VIGIL_RETRY_BACKOFF_S": "1,1,1,1,1,1,1"}, {"VIGIL_RETRY_BACKOFF_S": "100000"},
                                 {"VIGIL_RETRY_QUICK_ATTEMPTS": "0"}, {"VIGIL_RETRY_QUICK_ATTEMPTS": "many"}])
def test_a_bad_retry_setting_names_the_variable(env):
    with pytest.raises(ConfigError) as exc:
        RetryPolicy().with_env(env)
    assert next(iter(env)) in str(exc.value)


def test_session_timeout_from_the_environment(monkeypatch):
    from services.core.bus.policy import SESSION_TIMEOUT_MS, ConsumerTuning, session_timeout_ms

    assert session_timeout_ms({}) == SESSION_TIMEOUT_MS == 6000
    assert session_timeout_ms({"VIGIL_KAFKA_SESSION_TIMEOUT_MS": "2000"}) == 2000
    monkeypatch.setenv("VIGIL_KAFKA_SESSION_TIMEOUT_MS", "4000")
    assert ConsumerTuning().session_timeout_ms == 4000  # read when a tuning is made
    assert ConsumerTuning(session_timeout_ms=9000).session_timeout_ms == 9000
    monkeypatch.delenv("VIGIL_KAFKA_SESSION_TIMEOUT_MS")
    assert ConsumerTuning().session_timeout_ms == 6000


@pytest.mark.parametrize("raw", ["1500", "1s", "-2000", "1800001"])
def test_a_bad_session_timeout_names_the_variable(raw):
    from services.core.bus.policy import session_timeout_ms

    with pytest.raises(ConfigError) as exc:
        session_timeout_ms({"VIGIL_KAFKA_SESSION_TIMEOUT_MS": raw})
    assert "VIGIL_KAFKA_SESSION_TIMEOUT_MS" in str(exc.value)


def test_the_monitor_takes_the_session_setting_but_keeps_four_heartbeats():
    from services.monitor.app import HEARTBEAT_S, SESSION_TIMEOUT_S, session_timeout_s

    assert session_timeout_s({}) == SESSION_TIMEOUT_S == 6.0
    assert session_timeout_s({"VIGIL_KAFKA_SESSION_TIMEOUT_MS": "5000"}) == 5.0
    assert session_timeout_s({"VIGIL_KAFKA_SESSION_TIMEOUT_MS": "2000"}) == 4 * HEARTBEAT_S
