"""TASKQUEUE settings: env mapping, lazy defaults, overrides, validation, core Config."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from taskqueue_project.settings import TASKQUEUE_ENV, taskqueue_from_env
from tasks_app.conf import DEFAULTS, TaskQueueSettings, tq_settings
from tasks_app.core.config import Config
from tasks_app.devserver.redis import EmbeddedRedis

CUSTOM: dict[str, Any] = {
    "REDIS_URL": "redis://cache.internal:6380/2",
    "NAMESPACE": "staging",
    "DEFAULT_PRIORITY": 2,
    "DEFAULT_MAX_RETRIES": 7,
    "DEFAULT_TIMEOUT": 60,
    "RETRY_BACKOFF_BASE": 0.5,
    "RETRY_BACKOFF_FACTOR": 3.0,
    "RETRY_BACKOFF_MAX": 120.0,
    "LEASE_SECONDS": 45.0,
    "HEARTBEAT_INTERVAL": 2.0,
    "HEARTBEAT_TIMEOUT": 9.0,
    "RECOVERY_INTERVAL": 3.0,
    "RESULT_TTL": 3600.0,
    "MAX_PENDING": 500,
    "SHUTDOWN_GRACE": 10.0,
    "CONCURRENCY": 6,
    "DEMO_HANDLERS": False,
    "HANDLER_MODULE": "jobs.handlers",
}


def read(user: dict[str, Any], key: str) -> Any:
    """Read ``key`` from a TASKQUEUE of ``user`` through the shared settings object."""
    with override_settings(TASKQUEUE=user):
        return getattr(tq_settings, key)


def test_session_redis_is_what_the_project_uses(redis_server: EmbeddedRedis) -> None:
    assert tq_settings.REDIS_URL == redis_server.url


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_unset_keys_fall_back_to_defaults(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert read({}, key) == DEFAULTS[key]


def test_redis_url_comes_from_taskqueue_then_the_environment_then_the_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Any site's tq and worker honour $REDIS_URL when TASKQUEUE does not name a Redis."""
    monkeypatch.setenv("REDIS_URL", "redis://from-env.internal:6379/3")
    assert read({"NAMESPACE": "site"}, "REDIS_URL") == "redis://from-env.internal:6379/3"
    assert read({"REDIS_URL": "redis://setting:6379/1"}, "REDIS_URL") == "redis://setting:6379/1"
    monkeypatch.setenv("REDIS_URL", "  ")
    assert read({}, "REDIS_URL") == DEFAULTS["REDIS_URL"]
    monkeypatch.setenv("REDIS_URL", "http://not-redis")
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        read({}, "REDIS_URL")


def test_defaults_match_the_core_config() -> None:
    config = Config()
    for field in fields(Config):
        if field.name.upper() in DEFAULTS and field.name != "concurrency":
            assert DEFAULTS[field.name.upper()] == getattr(config, field.name), field.name


def test_override_settings_takes_effect_and_is_undone() -> None:
    before = tq_settings.NAMESPACE
    with override_settings(TASKQUEUE={"NAMESPACE": "override"}):
        assert tq_settings.NAMESPACE == "override"
    assert tq_settings.NAMESPACE == before


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NOT_A_SETTING"):
        _ = tq_settings.NOT_A_SETTING


def test_unknown_key_in_taskqueue_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="REDIS_ULR"):
        read({"REDIS_ULR": "redis://x"}, "NAMESPACE")


def test_values_are_cached_until_reload() -> None:
    settings_object = TaskQueueSettings()
    with override_settings(TASKQUEUE={"NAMESPACE": "first"}):
        assert settings_object.NAMESPACE == "first"
    assert settings_object.NAMESPACE == "first"
    settings_object.reload()
    assert settings_object.NAMESPACE == DEFAULTS["NAMESPACE"]


def test_integers_are_accepted_for_float_keys() -> None:
    value = read({"LEASE_SECONDS": 12}, "LEASE_SECONDS")
    assert value == 12.0
    assert isinstance(value, float)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("REDIS_URL", "http://localhost:6379"),
        ("REDIS_URL", ""),
        ("NAMESPACE", ""),
        ("NAMESPACE", "has{brace}"),
        ("NAMESPACE", "has space"),
        ("DEFAULT_PRIORITY", 1.5),
        ("DEFAULT_MAX_RETRIES", -1),
        ("DEFAULT_TIMEOUT", 0),
        ("DEFAULT_TIMEOUT", True),
        ("RETRY_BACKOFF_BASE", -1.0),
        ("RETRY_BACKOFF_FACTOR", 0.5),
        ("RETRY_BACKOFF_MAX", "600"),
        ("LEASE_SECONDS", 0),
        ("HEARTBEAT_INTERVAL", -5.0),
        ("HEARTBEAT_TIMEOUT", 0.0),
        ("RECOVERY_INTERVAL", None),
        ("RESULT_TTL", 0),
        ("MAX_PENDING", 0),
        ("SHUTDOWN_GRACE", -1),
        ("CONCURRENCY", 0),
        ("DEMO_HANDLERS", "yes"),
        ("HANDLER_MODULE", "not a module"),
        ("TASK_VISIBILITY", "owners"),
        ("TASK_VISIBILITY", None),
        ("MAX_JSON_DEPTH", 0),
        ("MAX_JSON_DEPTH", 501),
        ("MAX_JSON_DEPTH", True),
    ],
)
def test_invalid_values_are_refused_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(ImproperlyConfigured, match=key):
        read({key: value}, key)


def test_taskqueue_must_be_a_dict() -> None:
    with pytest.raises(ImproperlyConfigured, match="must be a dict"):
        read(["REDIS_URL"], "REDIS_URL")  # type: ignore[arg-type]


def test_core_config_maps_every_key_onto_its_field() -> None:
    with override_settings(TASKQUEUE=CUSTOM):
        config = tq_settings.core_config()
    for key, value in CUSTOM.items():
        if key.lower() in {field.name for field in fields(Config)}:
            assert getattr(config, key.lower()) == value, key


def test_core_config_leaves_concurrency_to_the_core_when_unset() -> None:
    with override_settings(TASKQUEUE={"CONCURRENCY": None}):
        assert tq_settings.core_config().concurrency == Config().concurrency


def test_core_config_requires_heartbeat_timeout_above_interval() -> None:
    overrides = {"HEARTBEAT_INTERVAL": 10.0, "HEARTBEAT_TIMEOUT": 10.0}
    with (
        override_settings(TASKQUEUE=overrides),
        pytest.raises(ImproperlyConfigured, match="HEARTBEAT_TIMEOUT"),
    ):
        tq_settings.core_config()


def test_env_table_covers_every_setting_once() -> None:
    keys = [key for _, key, _ in TASKQUEUE_ENV]
    assert sorted(keys) == sorted(DEFAULTS)


def test_env_mapping_converts_types_and_skips_unset_variables() -> None:
    environ = {
        "REDIS_URL": "redis://example:6379/1",
        "TASKQUEUE_NAMESPACE": "prod",
        "TASKQUEUE_DEFAULT_MAX_RETRIES": "5",
        "TASKQUEUE_LEASE_SECONDS": "12.5",
        "TASKQUEUE_CONCURRENCY": "8",
        "TASKQUEUE_DEMO_HANDLERS": "0",
        "TASKQUEUE_HANDLER_MODULE": "jobs",
        "TASKQUEUE_RESULT_TTL": "",
        "UNRELATED": "ignored",
    }
    assert taskqueue_from_env(environ) == {
        "REDIS_URL": "redis://example:6379/1",
        "NAMESPACE": "prod",
        "DEFAULT_MAX_RETRIES": 5,
        "LEASE_SECONDS": 12.5,
        "CONCURRENCY": 8,
        "DEMO_HANDLERS": False,
        "HANDLER_MODULE": "jobs",
    }


def test_env_mapping_of_an_empty_environment_is_empty() -> None:
    assert taskqueue_from_env({}) == {}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("TASKQUEUE_DEFAULT_TIMEOUT", "ten"),
        ("TASKQUEUE_LEASE_SECONDS", "30s"),
        ("TASKQUEUE_DEMO_HANDLERS", "maybe"),
    ],
)
def test_malformed_env_values_name_the_variable(name: str, text: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=name):
        taskqueue_from_env({name: text})


@pytest.mark.parametrize(
    ("text", "expected"), [("1", True), ("true", True), ("0", False), ("off", False)]
)
def test_env_booleans(text: str, expected: bool) -> None:
    assert taskqueue_from_env({"TASKQUEUE_DEMO_HANDLERS": text}) == {"DEMO_HANDLERS": expected}


def test_env_queues_name_queues_and_shards() -> None:
    got = taskqueue_from_env({"TASKQUEUE_QUEUES": "emails, default:4"})
    assert got == {"QUEUES": {"emails": {}, "default": {"shards": 4}}}
    with override_settings(TASKQUEUE=got):
        assert tq_settings.core_config().queues == (("emails", 1), ("default", 4))
    with pytest.raises(ImproperlyConfigured, match="TASKQUEUE_QUEUES"):
        taskqueue_from_env({"TASKQUEUE_QUEUES": "emails:many"})


def test_env_values_pass_validation() -> None:
    environ = {name: "1" for name, _, parse in TASKQUEUE_ENV if parse is not str}
    environ["TASKQUEUE_HEARTBEAT_TIMEOUT"] = "2"
    environ["TASKQUEUE_SCHEDULES"] = '{"s": {"type": "t", "every": 1}}'  # JSON, not a number
    environ["TASKQUEUE_TYPE_LIMITS"] = '{"email": {"concurrency": 1}}'
    with override_settings(TASKQUEUE=taskqueue_from_env(environ)):
        config = tq_settings.core_config()
    assert config.lease_seconds == 1.0
    assert config.concurrency == 1


def test_schedules_are_validated_naming_the_schedule_and_field() -> None:
    good = {"nightly": {"type": "report", "cron": "0 3 * * *", "timezone": "Europe/Paris"},
            "poll": {"task": "shop.tasks.poll", "every": 30, "kwargs": {"a": 1}}}
    specs = read({"SCHEDULES": good}, "SCHEDULES")
    assert [(s.name, s.cron, s.every, s.task) for s in specs] == [
        ("nightly", "0 3 * * *", None, False), ("poll", None, 30, True)]
    for bad, field in [({"type": "x", "cron": "0 25 * * *"}, "cron"),
                       ({"type": "x", "every": 0}, "every"),
                       ({"type": "x", "every": 5, "timezone": "Nowhere/City"}, "timezone")]:
        with pytest.raises(ImproperlyConfigured, match=f"'nightly'.*{field}"):
            read({"SCHEDULES": {"nightly": bad}}, "SCHEDULES")
    with pytest.raises(ImproperlyConfigured, match="'bad name'"):
        read({"SCHEDULES": {"bad name": {"type": "x", "every": 5}}}, "SCHEDULES")


def test_type_limits_are_validated_naming_the_type_field() -> None:
    from tasks_app.core.limits import TypeLimit

    good = {"email": {"concurrency": 5, "rate": "100/s"}, "sms": {"rate": "10/m"}}
    with override_settings(TASKQUEUE={"TYPE_LIMITS": good}):
        assert tq_settings.core_config().type_limits == (
            ("email", TypeLimit(5, "100/s")), ("sms", TypeLimit(None, "10/m")))
    for bad, field in (({"email": {"concurrency": 0}}, "concurrency"),
                       ({"email": {"rate": "5 per s"}}, "rate"),
                       ({"email": {"burst": 1}}, "burst"), ({"email": {}}, "concurrency"),
                       ({"": {"concurrency": 1}}, "type"), (["email"], "")):
        with (override_settings(TASKQUEUE={"TYPE_LIMITS": bad}),
              pytest.raises(ImproperlyConfigured, match=f"TYPE_LIMITS.*{field}")):
            tq_settings.core_config()
