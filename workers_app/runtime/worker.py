"""The worker supervisor: forks slot processes, watches them, runs the background loops.

Concurrency model: one process per slot.  A handler that overruns its timeout
is interrupted in its slot (SIGALRM) and, if it does not yield, the slot is
killed and replaced, so a stuck task never keeps running while its slot takes
the next one.  The supervisor holds the heartbeat, so leases of long tasks stay
renewed while the worker lives, and it records crashes and hard timeouts of
its slots as failed attempts at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tasks_app.core.broker import Beat, Broker, Outcome
from tasks_app.core.config import Config
from tasks_app.core.errors import BrokerUnavailable, StaleLease, TaskQueueError
from tasks_app.core.keys import PRIORITIES
from tasks_app.core.limits import TypeLimits
from tasks_app.core.queues import Serving
from tasks_app.core.redis_policy import eviction_policy
from tasks_app.core.registry import HandlerRegistry
from tasks_app.core.registry import registry as default_registry
from tasks_app.core.task import Lease

from .depth import DepthReporter
from .executor import timeout_message
from .heartbeat import Heartbeat
from .hooks import Hook, Hooks, LogHook
from .janitor import Janitor
from .promoter import Promoter
from .recoverer import Recoverer
from .scheduler import Scheduler
from .slot import SlotSpec, slot_main
from .slots import Slot

log = logging.getLogger("workers_app.runtime")
HARD_KILL_GRACE = 2.0
TICK = 0.05
PAUSE_CHECK = 0.5
_fork = multiprocessing.get_context("fork")


def default_worker_id() -> str:
    """hostname, pid and a random suffix: unique across hosts and restarts."""
    return f"worker-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


@dataclass
class WorkerOptions:
    """What ``runworker_tq`` can set."""

    concurrency: int | None = None
    priorities: list[int] = field(default_factory=lambda: list(PRIORITIES))
    worker_id: str | None = None
    burst: bool = False
    max_tasks: int | None = None
    shutdown_grace: float | None = None
    queues: Serving | None = None
    """The queues to serve, in order or by weight (None: every queue the namespace knows)."""


@dataclass
class _Child:
    index: int
    slot: Slot
    process: Any  # multiprocessing.Process
    killed_for_timeout: bool = False


class Worker:
    """One ``runworker_tq`` process."""

    def __init__(self, config: Config, options: WorkerOptions | None = None,
                 registry: HandlerRegistry | None = None, hooks: list[Hook] | None = None,
                 broker: Broker | None = None) -> None:
        self.config = config
        self.options = options or WorkerOptions()
        self.registry = registry or default_registry
        self.hooks = Hooks([LogHook(), *(hooks or [])])
        self.id = self.options.worker_id or default_worker_id()
        self.concurrency = self.options.concurrency or config.concurrency
        self.priorities = sorted(set(self.options.priorities), reverse=True)
        self.grace = (self.options.shutdown_grace if self.options.shutdown_grace is not None
                      else config.shutdown_grace)
        self.broker = broker or Broker.from_config(config)
        self.broker.serving = self.options.queues
        # Built once before the first fork (slot_broker), never used here: each slot
        # inherits it and opens its own connections (redis-py starts a fresh pool in a
        # forked child).
        self._slot_broker: Broker | None = None
        self.started_at = int(time.time() * 1000)
        self.children: list[_Child] = []
        self._stop = _fork.Value("b", 0, lock=False)
        self._budget = _fork.Value("q", self.options.max_tasks) if self.options.max_tasks else None
        self._stopping = threading.Event()
        self._forced = threading.Event()
        self._life_r, self._life_w = os.pipe()
        self.paused = False
        self._next_pause_check = 0.0
        self.heartbeat = Heartbeat(self.broker, self.id, self._fields, self._running,
                                   self._lease_lost, self._beat)
        self.loops = [self.heartbeat, Recoverer(self.broker, self.hooks), Promoter(self.broker),
                      DepthReporter(self.broker, self.hooks), Janitor(self.broker)]
        self.scheduler = Scheduler(self.broker, self.registry)
        self.loops.append(self.scheduler)

    # -- lifecycle -----------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; return the process exit code."""
        self._install_signals()
        if not self._register():
            return 1
        self._warn_if_evicting()
        self._sync_schedules()
        self._sync_type_limits()
        self.hooks.worker_event(self.id, "joined", state="idle", concurrency=self.concurrency,
                                hostname=socket.gethostname())
        log.info("worker %s started: %d slot(s), priorities %s, queues %s", self.id,
                 self.concurrency, ",".join(map(str, self.priorities)),
                 self.options.queues.describe() if self.options.queues else "*")
        self.children = [self._spawn(i) for i in range(self.concurrency)]
        for loop in self.loops:
            loop.start()
        try:
            self._supervise()
        finally:
            code = self._shutdown()
        return code

    def request_stop(self) -> None:
        """Begin a graceful stop (what the first SIGTERM/SIGINT does)."""
        if self._stopping.is_set():
            self._forced.set()
            return
        self._stopping.set()
        self._stop.value = 1

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: self.request_stop())

    def _register(self) -> bool:
        delay = 0.2
        while not self._stopping.is_set():
            try:
                self.heartbeat.run_once()
                return True
            except BrokerUnavailable as exc:
                log.warning("redis unavailable (%s); retrying in %.1fs", exc, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, 5.0)
        return False

    def _sync_schedules(self) -> None:
        """Write TASKQUEUE["SCHEDULES"] into Redis (settings win for the names they define)."""
        try:
            changed = self.scheduler.schedules.sync(self.config.schedules)
        except TaskQueueError as exc:
            log.error("could not sync the schedules of the settings: %s", exc)
            return
        if changed:
            log.info("schedules synced from settings: %s", ", ".join(changed))

    def _sync_type_limits(self) -> None:
        """Write TASKQUEUE["TYPE_LIMITS"] into Redis (those whose setting changed)."""
        try:
            changed = TypeLimits(self.broker).sync(dict(self.config.type_limits))
        except TaskQueueError as exc:
            log.error("could not write the type limits of the settings: %s", exc)
            return
        if changed:
            log.info("type limits written from settings: %s", ", ".join(changed))

    def _warn_if_evicting(self) -> None:
        """Log a WARNING when Redis may evict the queue's keys (checked once, at startup)."""
        try:
            found = eviction_policy(self.broker.client)
        except Exception as exc:  # noqa: BLE001  (a check must never stop the worker)
            log.debug("could not read redis maxmemory-policy: %s", exc)
            return
        if found.warning:
            log.warning("%s", found.warning)
        elif found.policy == "unknown":
            log.info("redis maxmemory-policy unknown (CONFIG and INFO unavailable); "
                     "make sure it is noeviction")

    def _spawn(self, index: int, slot: Slot | None = None) -> _Child:
        slot = slot or Slot()
        broker = self.slot_broker()
        _share_with_child()
        spec = SlotSpec(index, self.config, self.id, self.priorities, self.registry, self.hooks,
                        slot, self._stop, self._budget, self.options.burst, self._life_r,
                        self._life_w, supervisor_pid=os.getpid(), broker=broker)
        process = _fork.Process(target=slot_main, args=(spec,), name=f"{self.id}-slot{index}",
                                daemon=False)
        process.start()
        return _Child(index, slot, process)

    def slot_broker(self) -> Broker:
        """The broker every slot inherits, built before the first fork with all that needs
        no connection done (the scripts' code, the blocking client), so the slots share it
        rather than each building a copy of its own; each slot opens its own connections."""
        if self._slot_broker is None:
            broker = Broker.from_config(self.config)
            broker.serving = self.options.queues
            broker.scripts.library_name  # noqa: B018  (reads the scripts, builds their code)
            broker.blocking_client  # noqa: B018
            self._slot_broker = broker
        return self._slot_broker

    # -- supervision -----------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            self._check_children(respawn=True)
            if not any(c.process.is_alive() for c in self.children):
                return
            self._watch_pause()
            self._stopping.wait(TICK)

    def _watch_pause(self) -> None:
        """Report pause and resume (set by an operator on the registry) as they happen."""
        now = time.monotonic()
        if now < self._next_pause_check:
            return
        self._next_pause_check = now + PAUSE_CHECK
        try:
            paused = self.broker.is_paused(self.id)
        except BrokerUnavailable:
            return
        if paused != self.paused:
            self.paused = paused
            self.hooks.worker_event(self.id, "paused" if paused else "resumed",
                                    state="paused" if paused else "idle")

    def _check_children(self, respawn: bool) -> None:
        now = time.time()
        for i, child in enumerate(self.children):
            running = child.slot.snapshot()
            alive = child.process.is_alive()
            if alive and running and now > running.deadline + HARD_KILL_GRACE:
                log.warning("task %s overran its %gs timeout; killing slot %d", running.task_id,
                            running.timeout, child.index, extra={"task_id": running.task_id})
                child.killed_for_timeout = True
                _kill(child)
                alive = False
            if alive:
                continue
            # A slot that ends mid-task died, whatever its exit status (a handler may call
            # os._exit(0) or sys.exit()); exit 0 with no task is a slot that chose to stop.
            crashed = child.process.exitcode != 0 or child.slot.snapshot() is not None
            self._record_death(child)
            if crashed and respawn and not self._stopping.is_set():
                self.children[i] = self._spawn(child.index, child.slot)

    def _record_death(self, child: _Child) -> None:
        """Settle the attempts a dead slot held: the one it was running (and any it ran whose
        outcome it had not recorded yet) fail with timeout or 'worker lost'; those it had
        taken ahead and never started go back in line uncounted."""
        running = child.slot.snapshot()
        held = child.slot.held()
        if running is None and not held:
            return
        if running is not None:
            child.slot.count(ok=False)
            if child.killed_for_timeout:
                error = timeout_message(running.timeout)
            else:
                error = "worker lost"
                log.warning("slot %d died (exit %s) running task %s", child.index,
                            child.process.exitcode, running.task_id,
                            extra={"task_id": running.task_id})
            self._lose(Lease(running.task_id, running.fence, running.where), error,
                       time.time() - running.started)
        for h in held:
            if running is not None and (h.task_id, h.fence) == (running.task_id, running.fence):
                continue
            if h.started:
                self._lose(Lease(h.task_id, h.fence, h.where), "worker lost", None)
            else:
                self._settle(lambda h=h: self.broker.requeue(h.task_id, self.id, h.fence,
                                                             h.where))
        # Only now: until they are recorded, heartbeats must still report them.
        child.slot.forget()

    def _lose(self, lease: Lease, error: str, spent: float | None) -> None:
        outcome = self._settle(lambda: self.broker.fail(lease, self.id, error, duration=spent))
        if isinstance(outcome, Outcome) and not outcome.duplicate:
            self.hooks.attempt_lost(lease.id, error, outcome)

    def _settle(self, call: Any) -> Any:
        """Run a fenced broker call, retrying briefly while Redis is away; None if it failed."""
        for attempt in range(20):
            try:
                return call()
            except StaleLease:
                return None
            except BrokerUnavailable as exc:
                if attempt == 19:
                    log.error("could not reach redis (%s); the lease will expire instead", exc)
                    return None
                time.sleep(0.25)
            except TaskQueueError as exc:
                log.warning("could not settle task: %s", exc)
                return None
        return None

    def _lease_lost(self, attempts: list[tuple[str, str]]) -> None:
        """Kill slots still running attempts whose lease was taken over (same task and fence:
        a slot running a newer attempt of the same task is left alone)."""
        lost = set(attempts)
        for child in self.children:
            held = [h for h in child.slot.held() if (h.task_id, h.fence) in lost]
            if held and child.process.is_alive():
                # The fence changed: this slot's attempt no longer counts; stop it running
                # (what else it held is settled as for any dead slot).
                log.error("killing slot %d: it holds task %s whose lease was lost",
                          child.index, held[0].task_id, extra={"task_id": held[0].task_id})
                child.slot.release((h.task_id, h.fence) for h in held)
                running = child.slot.snapshot()
                if running and (running.task_id, running.fence) in lost:
                    child.slot.clear()
                _kill(child)

    # -- shutdown ----------------------------------------------------------------

    def _shutdown(self) -> int:
        self._stopping.set()
        self._stop.value = 1
        with contextlib.suppress(BrokerUnavailable):
            self.broker.wake_worker(self.id, self.concurrency)
        deadline = time.monotonic() + self.grace
        while any(c.process.is_alive() for c in self.children):
            if self._forced.is_set() or time.monotonic() > deadline:
                break
            self._check_children(respawn=False)
            time.sleep(TICK)
        self._put_back_unfinished()
        for loop in self.loops:
            loop.request_stop()
        self.heartbeat.join(5.0)  # no heartbeat may re-register us after deregistering
        for loop in self.loops:
            loop.join(0.2)  # daemon threads; a blocked promoter need not hold up the exit
        try:
            self.broker.deregister(self.id)
        except BrokerUnavailable as exc:
            log.warning("could not deregister (%s); the registry drops us after the timeout", exc)
        self.hooks.worker_event(self.id, "left", state="stopped", reason="shutdown")
        os.close(self._life_w)
        self.broker.close()
        log.info("worker %s stopped", self.id)
        return 1 if self._forced.is_set() else 0

    def _put_back_unfinished(self) -> None:
        for child in self.children:
            _kill(child)
            for h in child.slot.held():
                log.warning("putting back unfinished task %s", h.task_id,
                            extra={"task_id": h.task_id})
                self._settle(lambda h=h: self.broker.requeue(h.task_id, self.id, h.fence,
                                                             h.where))
            child.slot.forget()

    # -- heartbeat callbacks ---------------------------------------------------

    def _fields(self) -> dict[str, Any]:
        return {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": self.concurrency,
            "started_at": self.started_at,
            "priorities": ",".join(map(str, self.priorities)),
            "stopping": "1" if self._stopping.is_set() else "0",
            "processed": sum(c.slot.counts[0] for c in self.children),
            "failed": sum(c.slot.counts[1] for c in self.children),
        }

    def _beat(self, beat: Beat) -> None:
        """Tell the hooks the worker is alive and what it is doing (once per heartbeat)."""
        if not self.children:
            return  # the registering beat, before the worker joined
        fields = self._fields()
        active = len(self._running())
        state = ("stopping" if self._stopping.is_set() else "paused" if beat.paused
                 else "busy" if active else "idle")
        self.hooks.worker_event(self.id, "heartbeat", state=state, active_tasks=active,
                                concurrency=self.concurrency, processed=fields["processed"],
                                failed=fields["failed"])

    def _running(self) -> list[tuple[str, str, str]]:
        """Every attempt the slots hold (running, taken ahead, or run and not recorded), as
        (task id, fence, queue shard)."""
        return [(h.task_id, h.fence, h.where) for child in self.children
                for h in child.slot.held()]


def _share_with_child() -> None:
    """Before a fork: collect, then move every surviving object to the GC's permanent
    generation, so that collections in the supervisor and the slot never write to them
    and their pages stay shared; then give the C heap's free pages back to the system.
    Only the first call scans everything (about 0.1 s)."""
    gc.collect()
    gc.freeze()
    _release_free_pages()


def _release_free_pages() -> None:
    """glibc's ``malloc_trim``: return the whole free pages inside the C heap (what startup
    allocated and freed, about 1 MB of this site) to the system rather than keep them
    resident and shared by every slot.  Elsewhere, nothing."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # not glibc
        return
    trim(0)


def _kill(child: _Child) -> None:
    if child.process.is_alive():
        child.process.kill()
    child.process.join(5)
