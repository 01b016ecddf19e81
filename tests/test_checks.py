"""System checks: each misconfiguration is reported with its id, a sound site with none."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings

REDIS = "redis://127.0.0.1:6379/0"
LAYER = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                     "CONFIG": {"hosts": [REDIS], "serializer_format": "json"}}}


def taskqueue_ids(**overrides: Any) -> list[str]:
    """Ids of the taskqueue messages that run_checks reports under these settings."""
    values = {"TASKQUEUE": {"REDIS_URL": REDIS}, "CHANNEL_LAYERS": LAYER, **overrides}
    with override_settings(**values):
        return [m.id for m in run_checks(include_deployment_checks=False)
                if m.id and m.id.startswith("taskqueue.")]


def messages(**overrides: Any) -> list[str]:
    """The taskqueue messages' texts."""
    values = {"TASKQUEUE": {"REDIS_URL": REDIS}, "CHANNEL_LAYERS": LAYER, **overrides}
    with override_settings(**values):
        return [m.msg for m in run_checks() if m.id and m.id.startswith("taskqueue.")]


def test_the_projects_own_settings_pass() -> None:
    assert [m for m in run_checks() if m.id and m.id.startswith("taskqueue.")] == []


def test_a_complete_configuration_passes() -> None:
    assert taskqueue_ids() == []


def test_no_redis_url_is_a_warning_naming_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert taskqueue_ids(TASKQUEUE={}) == ["taskqueue.W001"]
    assert messages(TASKQUEUE={"NAMESPACE": "x"}) == [
        "TASKQUEUE['REDIS_URL'] is not set; using redis://127.0.0.1:6379/0."]


def test_a_redis_url_in_the_environment_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", REDIS)
    assert taskqueue_ids(TASKQUEUE={"NAMESPACE": "x"}) == []


@pytest.mark.parametrize("value", [["a"], "redis"])
def test_taskqueue_must_be_a_dict(value: Any) -> None:
    assert "taskqueue.E001" in taskqueue_ids(TASKQUEUE=value)


def test_unknown_keys_are_named() -> None:
    tq = {"REDIS_URL": REDIS, "REDIS_URI": "x", "CONCURENCY": 2}
    assert taskqueue_ids(TASKQUEUE=tq) == ["taskqueue.E001"]
    assert messages(TASKQUEUE=tq) == ["Unknown TASKQUEUE keys: CONCURENCY, REDIS_URI."]


def test_every_wrong_value_is_reported_at_once() -> None:
    tq = {"REDIS_URL": "http://x", "CONCURRENCY": "4", "AUTH_ENABLED": "yes",
          "API_KEYS": "a,b"}
    found = messages(TASKQUEUE=tq)
    assert len(found) == 4
    assert "TASKQUEUE['CONCURRENCY'] must be an integer >= 1; got '4'." in found
    assert any(m.startswith("TASKQUEUE['REDIS_URL'] must be a redis://") for m in found)
    assert taskqueue_ids(TASKQUEUE=tq) == ["taskqueue.E002"] * 4


def test_heartbeat_timeout_must_exceed_the_interval() -> None:
    tq = {"REDIS_URL": REDIS, "HEARTBEAT_INTERVAL": 5.0, "HEARTBEAT_TIMEOUT": 5.0}
    assert taskqueue_ids(TASKQUEUE=tq) == ["taskqueue.E002"]


def test_events_need_a_channel_layer() -> None:
    assert taskqueue_ids(CHANNEL_LAYERS={}) == ["taskqueue.E003"]
    off = {"REDIS_URL": REDIS, "EVENTS_ENABLED": False}
    assert taskqueue_ids(CHANNEL_LAYERS={}, TASKQUEUE=off) == []


@pytest.mark.parametrize("layer", [
    {"BACKEND": "channels.layers.InMemoryChannelLayer"},
    {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS]}},
    {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": [REDIS]}},
])
def test_the_layer_must_be_the_json_pubsub_one(layer: dict[str, Any]) -> None:
    assert taskqueue_ids(CHANNEL_LAYERS={"default": layer}) == ["taskqueue.E004"]


def test_a_layer_on_another_redis_is_a_warning() -> None:
    layer = {"default": {**LAYER["default"], "CONFIG": {
        "hosts": ["redis://elsewhere:6379/0"], "serializer_format": "json"}}}
    assert taskqueue_ids(CHANNEL_LAYERS=layer) == ["taskqueue.W003"]
    same = {"default": {**LAYER["default"], "CONFIG": {
        "hosts": ["redis://127.0.0.1/3"], "serializer_format": "json"}}}
    assert taskqueue_ids(CHANNEL_LAYERS=same) == []


def test_auth_on_needs_a_way_to_authenticate() -> None:
    apps = [a for a in settings.INSTALLED_APPS if a != "rest_framework_api_key"]
    tq = {"REDIS_URL": REDIS, "AUTH_ENABLED": True, "AUTH_JWT": False}
    assert taskqueue_ids(TASKQUEUE=tq) == []  # keys created in the admin
    with override_settings(INSTALLED_APPS=apps):
        assert "taskqueue.E005" in taskqueue_ids(TASKQUEUE=tq)
        assert "taskqueue.E005" not in taskqueue_ids(TASKQUEUE={**tq, "API_KEYS": ["k" * 20]})
    assert taskqueue_ids(TASKQUEUE={**tq, "AUTH_API_KEYS": False}) == ["taskqueue.E005"]
    assert taskqueue_ids(TASKQUEUE={**tq, "AUTH_ENABLED": False, "AUTH_API_KEYS": False}) == []


def test_missing_apps_are_named() -> None:
    apps = [a for a in settings.INSTALLED_APPS
            if a not in ("rest_framework", "drf_spectacular")]
    with override_settings(INSTALLED_APPS=apps):
        found = [m for m in run_checks() if m.id == "taskqueue.E006"]
    assert sorted(m.msg.split("'")[1] for m in found) == ["drf_spectacular", "rest_framework"]


def test_the_openapi_pages_need_drf_spectaculars_schema_class() -> None:
    assert taskqueue_ids(REST_FRAMEWORK={}) == ["taskqueue.W005"]
    spectacular = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
    assert taskqueue_ids(REST_FRAMEWORK=spectacular) == []


def test_a_urlconf_without_taskqueue_is_a_warning() -> None:
    assert taskqueue_ids(ROOT_URLCONF="tests.test_checks") == ["taskqueue.W002"]


def test_a_urlconf_without_the_admin_is_a_warning() -> None:
    assert taskqueue_ids(ROOT_URLCONF="tests.urls_without_admin") == ["taskqueue.W004"]


urlpatterns: list[Any] = []  # an empty URLconf for the tests above


def test_a_bad_queue_name_has_its_own_id_not_the_settings_one() -> None:
    """taskqueue.E001 means "TASKQUEUE is not a dict / has unknown keys"; a TASKS alias with
    a blank queue name is another mistake and must not share its id."""
    tasks = {"default": {"BACKEND": "tasks_app.backends.TaskQueueBackend",
                         "QUEUES": ["default", " ", "-emails"]}}
    found = [m for m in messages_with_ids(TASKS=tasks) if "queue name" in m[1]]
    assert [i for i, _ in found] == ["taskqueue.E007", "taskqueue.E007"]
    assert "taskqueue.E001" not in taskqueue_ids(TASKS=tasks)


def messages_with_ids(**overrides: Any) -> list[tuple[str, str]]:
    """(id, text) of the taskqueue messages under these settings."""
    values = {"TASKQUEUE": {"REDIS_URL": REDIS}, "CHANNEL_LAYERS": LAYER, **overrides}
    with override_settings(**values):
        return [(m.id, m.msg) for m in run_checks() if m.id and m.id.startswith("taskqueue.")]


def test_the_layer_warning_does_not_print_the_redis_password() -> None:
    """manage.py check, migrate and runserver print this to the console and to CI logs."""
    password = "s3cret-Redis-pw"
    layer = {"default": {**LAYER["default"], "CONFIG": {
        "hosts": ["redis://elsewhere:6379/0"], "serializer_format": "json"}}}
    [message] = messages(TASKQUEUE={"REDIS_URL": f"redis://:{password}@127.0.0.1:6379/0"},
                         CHANNEL_LAYERS=layer)
    assert password not in message
    assert "redis://:***@127.0.0.1:6379/0" in message
def deploy_ids(**taskqueue: Any) -> list[str]:
    """Ids of the taskqueue security messages of ``check --deploy`` with DEBUG off."""
    values = {"TASKQUEUE": {"REDIS_URL": REDIS, **taskqueue}, "CHANNEL_LAYERS": LAYER,
              "DEBUG": False}
    with override_settings(**values):
        return [m.id for m in run_checks(include_deployment_checks=True)
                if m.id and m.id.startswith("taskqueue.security.")]


def test_check_deploy_warns_that_an_api_without_auth_is_open_to_anyone() -> None:
    """A site that adds the app and deploys with auth off lets anyone empty its DLQ."""
    assert deploy_ids() == ["taskqueue.security.W005"]
    assert deploy_ids(AUTH_ENABLED=True, API_KEYS=["k" * 20]) == []
    assert deploy_ids(PERMISSION_CLASSES=["rest_framework.permissions.IsAuthenticated"]) == []


def test_the_open_api_warning_is_for_deployments_only() -> None:
    """``manage.py check`` (and runserver) stay quiet for local work with auth off."""
    assert "taskqueue.security.W005" not in taskqueue_ids(DEBUG=False)


def test_manage_py_check_deploy_names_the_open_api(tmp_path: Any) -> None:
    """What an operator runs: the warning and its hint reach the terminal."""
    import os
    import subprocess
    import sys

    environ = {**os.environ, "DJANGO_DEBUG": "0", "TASKQUEUE_AUTH_ENABLED": "0",
               "DJANGO_SECRET_KEY": "a-long-random-deploy-check-key-" + "x" * 40,
               "DATABASE_PATH": str(tmp_path / "db.sqlite3")}
    done = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], env=environ,
                          capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert "taskqueue.security.W005" in done.stderr + done.stdout
    assert "TASKQUEUE['AUTH_ENABLED'] = True" in done.stderr + done.stdout


def test_site_authentication_classes_count_as_a_way_to_authenticate() -> None:
    tq = {"REDIS_URL": REDIS, "AUTH_ENABLED": True, "AUTH_API_KEYS": False, "AUTH_JWT": False}
    assert taskqueue_ids(TASKQUEUE=tq) == ["taskqueue.E005"]
    session = ["rest_framework.authentication.SessionAuthentication"]
    assert taskqueue_ids(TASKQUEUE={**tq, "AUTHENTICATION_CLASSES": session}) == []


@pytest.mark.parametrize(("key", "path", "error"), [
    ("AUTHENTICATION_CLASSES", "no_such_module.Auth", "cannot import 'no_such_module.Auth'"),
    ("AUTHENTICATION_CLASSES", "rest_framework.permissions.IsAuthenticated",
     "is not a subclass of rest_framework.authentication.BaseAuthentication"),
    ("PERMISSION_CLASSES", "rest_framework.authentication.BasicAuthentication",
     "is not a subclass of rest_framework.permissions.BasePermission"),
])
def test_site_class_import_strings_are_checked(key: str, path: str, error: str) -> None:
    found = messages(TASKQUEUE={"REDIS_URL": REDIS, key: [path]})
    assert len(found) == 1 and error in found[0] and f"TASKQUEUE['{key}']" in found[0]
