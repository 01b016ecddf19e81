"""Periodic schedules in the core: cron evaluation (against cronsim, DST days, leap days),
``every`` without drift, the claim script's exactly-once and its race with a change of the
definition, catchup policies after missed ticks, events and metrics.  Real Redis; the clock
is injected."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from tasks_app.core import metrics
from tasks_app.core.broker import Broker
from tasks_app.core.errors import (
    ScheduleChanged,
    ScheduleExists,
    ScheduleNotFound,
    ValidationError,
)
from tasks_app.core.events import expand
from tasks_app.core.registry import HandlerRegistry
from tasks_app.core.schedules import (
    CATCHUP_ALL_CAP,
    Schedules,
    ScheduleSpec,
    due,
    next_tick,
    parse_schedule,
)
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import open_broker

T0 = int(datetime(2024, 6, 3, 12, 0, 0, tzinfo=UTC).timestamp() * 1000)


class Clock:
    """A clock tests move by hand."""

    def __init__(self, ms: int = T0) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000

    def jump(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


@pytest.fixture
def broker(redis_server: EmbeddedRedis) -> Iterator[Broker]:
    with open_broker(redis_server.url, events_channel="tq-events") as b:
        yield b


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def schedules(broker: Broker, clock: Clock) -> Schedules:
    return Schedules(broker, now=clock)


def registry() -> HandlerRegistry:
    reg = HandlerRegistry()
    reg.register("report", lambda payload, ctx: None)
    return reg


def spec(**fields: object) -> ScheduleSpec:
    data: dict[str, object] = {"name": "s", "type": "report", "every": 10, **fields}
    return parse_schedule(data, registry())


def tasks_of(broker: Broker, schedule: str) -> list[dict[str, Any]]:
    out = []
    for key in broker.client.scan_iter(match=f"{broker.keys.prefix}task:*"):
        record = broker.client.hgetall(key)
        meta = json.loads(record["metadata"])
        if meta.get("schedule") == schedule:
            out.append({**record, "meta": meta})
    return sorted(out, key=lambda r: r["meta"]["scheduled_for"])


# -- cron and every --------------------------------------------------------------------

ZONES = ["Europe/Paris", "America/New_York", "Australia/Sydney", "America/Sao_Paulo",
         "Asia/Kolkata", "UTC"]
EXPRESSIONS = ["30 2 * * *", "0 3 * * *", "*/15 * * * *", "0 0 29 2 *", "5 1-3 * * 0",
               "0 0 1 * *", "15 2 * * 1-5"]


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_cron_ticks_are_the_library_ticks_in_the_zone(zone: str, expr: str) -> None:
    """Over two years (two of each DST change, one leap day), tick after tick."""
    s = spec(cron=expr, timezone=zone, every=None)
    tz = ZoneInfo(zone)
    start = datetime(2023, 12, 30, 23, 59, tzinfo=tz)
    expected = CronSim(expr, start)
    t = int(start.timestamp() * 1000)
    for _ in range(400):
        t = next_tick(s, 0, t)
        assert t == int(next(expected).timestamp() * 1000)
    assert t > int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)


def ticks_on(s: ScheduleSpec, day: datetime) -> list[datetime]:
    t, end = int(day.timestamp() * 1000) - 1, int(day.timestamp() * 1000) + 86400_000
    out = []
    while (t := next_tick(s, 0, t)) < end:
        out.append(datetime.fromtimestamp(t / 1000, ZoneInfo(s.timezone)))
    return out


@pytest.mark.parametrize(("zone", "spring", "fall"), [
    ("Europe/Paris", (2024, 3, 31), (2024, 10, 27)),
    ("America/New_York", (2024, 3, 10), (2024, 11, 3)),
    ("Australia/Sydney", (2024, 10, 6), (2024, 4, 7)),
])
def test_a_0230_job_runs_once_on_both_dst_days(zone: str, spring: tuple[int, int, int],
                                               fall: tuple[int, int, int]) -> None:
    s = spec(cron="30 2 * * *", timezone=zone, every=None)
    tz = ZoneInfo(zone)
    skipped = ticks_on(s, datetime(*spring, tzinfo=tz))
    assert len(skipped) == 1
    assert skipped[0].hour == 3  # 02:30 does not exist: once, right after the change
    repeated = ticks_on(s, datetime(*fall, tzinfo=tz))
    assert len(repeated) == 1 and (repeated[0].hour, repeated[0].minute) == (2, 30)


def test_a_leap_day_job_waits_four_years() -> None:
    s = spec(cron="0 12 29 2 *", timezone="Asia/Tokyo", every=None)
    t = next_tick(s, 0, int(datetime(2024, 3, 1, tzinfo=UTC).timestamp() * 1000))
    assert datetime.fromtimestamp(t / 1000, ZoneInfo("Asia/Tokyo")) == datetime(
        2028, 2, 29, 12, tzinfo=ZoneInfo("Asia/Tokyo"))


@pytest.mark.parametrize("every", [1, 7, 30, 3600])
def test_every_ticks_never_drift_with_lag(every: int) -> None:
    """The n-th tick is anchor + n*every however late each one was looked at."""
    s = spec(every=every)
    anchor, t = T0 + 123, T0 + 123
    for n in range(1, 200):
        late = t + (n * 7919) % (every * 1000)  # looked at late, by up to one period
        tick = next_tick(s, anchor, t)
        assert tick == anchor + n * every * 1000
        assert next_tick(s, anchor, late) in (tick, tick + every * 1000)
        t = tick


@pytest.mark.parametrize(("fields", "field"), [
    ({"cron": "61 * * * *", "every": None}, "cron"),
    ({"cron": "* * * *", "every": None}, "cron"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"timezone": "../../etc/passwd"}, "timezone"),
    ({"every": 0}, "every"),
    ({"every": 1.5}, "every"),
    ({"cron": "* * * * *"}, "cron"),  # both
    ({"every": None}, "cron"),  # neither
    ({"name": "bad name"}, "name"),
    ({"catchup": "some"}, "catchup"),
    ({"type": "nope"}, "type"),
    ({"type": None, "task": "nowhere.task"}, "task"),
    ({"priority": 9}, "priority"),
    ({"queue": "no/slash"}, "queue"),
    ({"payload": {"x": "y" * 70_000}}, "payload"),
    ({"colour": "red"}, "colour"),
])
def test_bad_definitions_name_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        spec(**fields)
    assert err.value.field == field


# -- the claim ----------------------------------------------------------------------------


def test_a_schedule_fires_once_per_tick_and_moves_on(broker: Broker, schedules: Schedules,
                                                    clock: Clock) -> None:
    schedules.create(spec())
    assert schedules.fire_due(["default"]).task_ids == []
    clock.jump(10)
    first = schedules.fire_due(["default"]).task_ids
    assert len(first) == 1
    assert schedules.fire_due(["default"]).task_ids == []  # same tick: nothing more
    stored = schedules.get("s")
    assert stored.next_run_at == T0 + 20_000
    assert stored.last_task_id == first[0]
    task = broker.get(first[0])
    assert task.metadata == {"schedule": "s", "scheduled_for": "2024-06-03T12:00:10.000Z"}
    assert task.state.value == "pending" and task.type == "report"


def test_two_brokers_racing_for_a_tick_create_one_task(redis_server: EmbeddedRedis,
                                                     clock: Clock) -> None:
    with open_broker(redis_server.url) as setup:
        Schedules(setup, now=clock).create(spec(every=1))
    clock.jump(1)
    created: list[str] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        with open_broker(redis_server.url) as b:
            mine = Schedules(b, now=clock)
            barrier.wait()
            created.extend(mine.fire_due(["default"]).task_ids)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(created) == 1


def test_a_claim_of_a_changed_definition_creates_nothing(broker: Broker, schedules: Schedules,
                                                       clock: Clock) -> None:
    schedules.create(spec(payload={"v": 1}))
    clock.jump(10)
    read = schedules.get("s")  # what a worker read before the change
    schedules.replace(spec(payload={"v": 2}))
    assert schedules._fire(read, "tick", [T0 + 10_000], 0, T0 + 20_000) is None
    assert tasks_of(broker, "s") == []
    fired = schedules.fire_due(["default"]).task_ids  # the next round reads the new one
    assert [json.loads(t["payload"]) for t in tasks_of(broker, "s")] == [{"v": 2}]
    assert len(fired) == 1


def test_a_claim_of_a_deleted_or_paused_schedule_creates_nothing(
        broker: Broker, schedules: Schedules, clock: Clock) -> None:
    schedules.create(spec())
    clock.jump(10)
    read = schedules.get("s")
    schedules.pause("s")
    assert schedules._fire(read, "tick", [T0 + 10_000], 0, T0 + 20_000) is None
    schedules.delete("s")
    assert schedules._fire(read, "tick", [T0 + 10_000], 0, T0 + 20_000) is None
    assert tasks_of(broker, "s") == []
    with pytest.raises(ScheduleNotFound):
        schedules.get("s")


def test_a_replace_that_keeps_the_timing_keeps_the_next_tick(
        schedules: Schedules, clock: Clock) -> None:
    schedules.create(spec())
    clock.jump(10)
    schedules.fire_due(["default"])
    clock.jump(3)
    assert schedules.replace(spec(payload={"a": 1})).next_run_at == T0 + 20_000
    assert schedules.replace(spec(every=60)).next_run_at == T0 + 13_000 + 60_000


def test_names_are_unique_across_queues(schedules: Schedules) -> None:
    schedules.create(spec(queue="emails"))
    with pytest.raises(ScheduleExists):
        schedules.create(spec())
    assert [s.spec.queue for s in schedules.all()] == ["emails"]


def test_moving_a_schedule_to_another_queue(broker: Broker, schedules: Schedules,
                                            clock: Clock) -> None:
    schedules.create(spec())
    schedules.replace(spec(queue="emails"))
    clock.jump(10)
    assert schedules.fire_due(["default"]).task_ids == []
    fired = schedules.fire_due(["emails"]).task_ids
    assert len(fired) == 1
    assert broker.get(fired[0]).queue == "emails"


def test_a_stale_writer_gets_schedule_changed(schedules: Schedules) -> None:
    schedules.create(spec())
    read = schedules.get("s")
    schedules.replace(spec(payload={"a": 1}))
    with pytest.raises(ScheduleChanged):
        schedules.replace(spec(payload={"b": 2}), read)


def test_pause_resume_and_trigger(broker: Broker, schedules: Schedules, clock: Clock) -> None:
    schedules.create(spec())
    assert schedules.pause("s").paused
    clock.jump(60)
    assert schedules.fire_due(["default"]).task_ids == []
    task_id = schedules.trigger("s")  # a paused schedule still runs on demand
    assert broker.get(task_id).metadata["trigger"] == "manual"
    resumed = schedules.resume("s")
    assert not resumed.paused and resumed.next_run_at == T0 + 70_000  # no catch-up of a pause
    assert schedules.get("s").last_task_id == task_id


# -- catchup --------------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "runs", "missed"), [
    ("latest", [10], 9), ("all", list(range(1, 11)), 0), ("none", [], 10)])
def test_catchup_after_ten_missed_ticks(broker: Broker, schedules: Schedules, clock: Clock,
                                        policy: str, runs: list[int], missed: int) -> None:
    schedules.create(spec(catchup=policy))
    pubsub = broker.client.pubsub()
    pubsub.subscribe("tq-events")
    clock.jump(105)  # ticks at +10 ... +100 passed with no worker
    schedules.fire_due(["default"])
    fired = [t["meta"]["scheduled_for"] for t in tasks_of(broker, "s")]
    assert fired == [datetime.fromtimestamp(T0 / 1000 + 10 * n, UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z") for n in runs]
    assert schedules.get("s").next_run_at == T0 + 110_000
    events = [e for e in received(pubsub) if e["type"].startswith("schedule.")]
    assert [e["type"] for e in events].count("schedule.fired") == len(runs)
    missed_events = [e for e in events if e["type"] == "schedule.missed"]
    assert sum(e["data"]["missed"] for e in missed_events) == missed
    snap = metrics.parse(broker.client.hgetall(broker.keys.metrics))
    assert snap.counters["schedule_runs"].get(("s",), 0) == len(runs)
    assert snap.counters["schedule_missed"].get(("s",), 0) == missed
    if runs:
        lag = snap.histograms["schedule_lag"][("s",)]
        assert lag.count == len(runs) and lag.sum >= 5 * len(runs)


def received(pubsub: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while (message := pubsub.get_message(timeout=0.2)) is not None:
        if message["type"] == "message":
            out += expand(json.loads(message["data"]))
    return out


def test_catchup_all_is_capped(broker: Broker, schedules: Schedules, clock: Clock) -> None:
    schedules.create(spec(catchup="all", every=1))
    clock.jump(CATCHUP_ALL_CAP + 50.5)
    assert len(schedules.fire_due(["default"]).task_ids) == CATCHUP_ALL_CAP
    snap = metrics.parse(broker.client.hgetall(broker.keys.metrics))
    assert snap.counters["schedule_missed"][("s",)] == 50


def test_a_clock_jumping_back_delays_and_never_repeats(broker: Broker, schedules: Schedules,
                                                     clock: Clock) -> None:
    schedules.create(spec(every=1))
    seen = []
    for step in [1, 1, -3, 1, 1, 1, 1, 5, 1]:
        clock.jump(step)
        schedules.fire_due(["default"])
        seen = [t["meta"]["scheduled_for"] for t in tasks_of(broker, "s")]
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen)


def test_cron_catchup_counts_missed_ticks(schedules: Schedules) -> None:
    s = spec(cron="*/5 * * * *", every=None, catchup="latest")
    plan = due(s, 0, T0 + 300_000, T0 + 3600_000)
    assert plan.ticks == [T0 + 3600_000] and plan.missed == 11
    assert plan.following == T0 + 3900_000


def test_an_unhandled_type_is_reported_not_fired(broker: Broker, schedules: Schedules,
                                               clock: Clock) -> None:
    schedules.create(spec())
    clock.jump(10)
    result = schedules.fire_due(["default"], handles=lambda t: False)
    assert result.task_ids == [] and len(result.unhandled) == 1
    assert "no handler for task type 'report'" in (schedules.get("s").error or "")
    assert schedules.fire_due(["default"], handles=lambda t: False).unhandled == []  # once
    assert len(schedules.fire_due(["default"], handles=lambda t: True).task_ids) == 1
    assert schedules.get("s").error is None


def test_settings_sync_wins_for_its_names_only(schedules: Schedules) -> None:
    schedules.create(spec(name="runtime"))
    assert schedules.sync([spec(name="nightly", cron="0 3 * * *", every=None)]) == ["nightly"]
    assert schedules.sync([spec(name="nightly", cron="0 3 * * *", every=None)]) == []
    schedules.pause("nightly")  # a run-time pause lasts until the settings change
    assert schedules.sync([spec(name="nightly", cron="0 3 * * *", every=None)]) == []
    assert schedules.get("nightly").paused
    changed = spec(name="nightly", cron="0 4 * * *", every=None)
    assert schedules.sync([changed]) == ["nightly"]
    assert schedules.get("nightly").spec.cron == "0 4 * * *"
    assert not schedules.get("nightly").paused
    assert schedules.get("runtime").origin == "api"
    assert schedules.count() == 2
