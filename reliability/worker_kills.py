"""Worker kills: SIGKILL workers (supervisors, and slot processes) while tasks run.

    .venv/bin/python reliability/worker_kills.py            # 10,000 tasks, 30 + 10 kills
    .venv/bin/python reliability/worker_kills.py --quick    # 300 tasks, 5 + 2 kills (CI)

Tasks (``rel.sleep``, 0.05-1 s) are submitted at a steady rate below the
workers' capacity, so the queue stays short and a recovered task's delay
measures recovery, not backlog.  Every few seconds a random worker's
supervisor gets ``kill -9`` (only the supervisor: its slots must notice and
exit) and is restarted (every other time under the same worker id, else a
fresh one); now and then a single slot process is killed instead (its
supervisor replaces it).  Each attempt is written to a ledger outside Redis
(reliability/handlers.py), every ``task.completed`` event (one per accepted
ack) is counted, and two poison tasks that end their own process on every
attempt (SIGKILL; exit status 0) must end in the DLQ without costing their
workers a slot.

Pass: 0 lost; 0 completed twice (one completion event per task, completion
counter == tasks); re-executions <= attempts in flight at the kills, each one
an attempt of a killed process; every killed task back in the queue within
lease + recovery interval (x1.2 jitter) + backoff max + 0.5 s of the kill
(the next attempt's start minus its queue wait; its finish minus the kill
minus its duration is reported too);
each poison task ran max_retries + 1 times and is in the DLQ; every worker
still has all its slots at the end; a killed supervisor's slots exit within 1 s.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reliability.common import (  # noqa: E402
    CompletionEvents,
    Ledger,
    Proc,
    Run,
    completed_success_counter,
    fast_env,
    setup_django,
    start_redis,
    start_worker,
    table,
    task_fields,
    verdict,
    wait_slots,
    wait_until,
)

LEASE, HEARTBEAT, RECOVERY, BACKOFF_MAX = 5.0, 1.0, 1.0, 0.5
POISON_RETRIES = 2


@dataclass
class Kill:
    at: float  # SIGKILL sent
    kind: str  # "worker" (supervisor) or "slot"
    pid: int  # the supervisor's pid, or the slot's
    dead: float = 0.0  # the killed process reaped: SIGKILL takes effect in between


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the CI form")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if args.quick:
        n, workers_n, conc, worker_kills, slot_kills, rate, gap = 300, 3, 4, 5, 2, 12.0, 1.5
    else:
        n, workers_n, conc, worker_kills, slot_kills, rate, gap = 10_000, 4, 8, 30, 10, 45.0, 3.0
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    run = Run("worker-kills")
    env = fast_env(LEASE, HEARTBEAT, RECOVERY)
    server = start_redis(run)
    setup_django(env)
    from tasks_app import producer
    from tasks_app.connection import get_broker

    print(f"worker kills: {n} tasks, {workers_n} workers x {conc} slots, "
          f"{worker_kills} supervisor + {slot_kills} slot kills, seed {seed}, dir {run.dir}")
    events = CompletionEvents(server.url)
    workers: list[Proc] = [start_worker(run, env, conc, f"k{i}") for i in range(workers_n)]
    for w in workers:
        wait_slots(w, conc)
    durations: dict[str, float] = {}
    ids: list[str] = []
    kills: list[Kill] = []
    orphan_exits: list[float] = []  # supervisor killed -> its last slot gone (s)
    all_procs: list[Proc] = list(workers)
    t0 = time.time()
    poison = producer.enqueue("rel.poison", {}, max_retries=POISON_RETRIES).id
    poison_exit = producer.enqueue("rel.poison_exit", {}, max_retries=POISON_RETRIES).id

    def submit() -> None:
        sent = 0
        start = time.monotonic()
        while sent < n:
            due = int((time.monotonic() - start) * rate) + 1
            secs = [round(rng.uniform(0.05, 1.0), 3) for _ in range(min(due - sent, n - sent))]
            batch = [{"type": "rel.sleep", "payload": {"seconds": s}, "max_retries": 25}
                     for s in secs]
            if batch:
                for task, s in zip(producer.enqueue_many(batch), secs, strict=True):
                    ids.append(task.id)
                    durations[task.id] = s
                sent += len(batch)
            time.sleep(0.05)

    submitter = threading.Thread(target=submit, daemon=True)
    submitter.start()
    try:
        plan = ["worker"] * worker_kills + ["slot"] * slot_kills
        rng.shuffle(plan)
        time.sleep(gap)
        for kind in plan:
            i = rng.randrange(len(workers))
            victim = workers[i]
            if kind == "worker":
                slots_before = victim.slot_pids()
                kills.append(Kill(time.time(), "worker", victim.pid))
                victim.signal(signal.SIGKILL)  # the supervisor only, as the OOM killer would
                victim.proc.wait()
                kills[-1].dead = time.time()
                orphan_exits.append(wait_gone(slots_before, 5.0) - kills[-1].at)
                victim.kill_all()  # whatever is left of its session
                # every other restart keeps the worker id (as a process manager would):
                # its first heartbeat fails what the dead process ran; else a fresh id
                same_id = sum(k.kind == "worker" for k in kills) % 2 == 0
                workers[i] = start_worker(run, env, conc, f"k{i}",
                                          victim.worker_id if same_id else None)
                all_procs.append(workers[i])
            else:
                slots = victim.slot_pids()
                if not slots:
                    continue
                pid = rng.choice(slots)
                kills.append(Kill(time.time(), "slot", pid))
                with_suppress_kill(pid)
                kills[-1].dead = wait_gone([pid], 5.0)
            time.sleep(rng.uniform(0.5 * gap, 1.5 * gap))
        submitter.join()

        def done() -> bool:
            fields = task_fields(ids, "state")
            return all(v[0] == "completed" for v in fields.values())

        wait_until(done, timeout=180 if not args.quick else 90)
        wait_until(lambda: all(v[0] == "dead_letter" for v in
                               task_fields([poison, poison_exit], "state").values()), 30)
        time.sleep(1.0)  # the last completion events
        drained = time.time()
        slots_alive = sum(len(w.slot_pids()) for w in workers)
        fields = task_fields(ids, "state", "attempts", "wait_us")
        poison_f = task_fields([poison], "state", "attempts", "dlq_id")[poison]
        exit_f = task_fields([poison_exit], "state", "attempts", "dlq_id")[poison_exit]
        counter = completed_success_counter()
        broker = get_broker()
        dlq_ids = {_text(dict(e[1]).get(b"task_id") or dict(e[1]).get("task_id"))
                   for e in broker.client.xrange(broker.keys.dlq)}
    finally:
        for w in workers:
            w.stop(timeout=10)
        events.close()
        server.stop()

    ledger = Ledger.read(run.ledger)
    states = {tid: v[0] for tid, v in fields.items()}
    lost = [t for t, s in states.items() if s != "completed"]
    twice = [t for t in ids if events.completed[t] > 1]
    no_event = [t for t in ids if events.completed[t] == 0]
    accepted = {tid: int(v[1] or 0) for tid, v in fields.items()}

    # Attempts in flight at each kill (from the ledger): started before the kill by the
    # killed process, and either not finished by then or finished but never accepted.
    # An attempt counts once, for the first kill that ended it.  A kill lands between
    # sending SIGKILL and the process being reaped (a few ms on a busy machine), so
    # "started before the kill" means before the killed process was seen dead.
    in_flight_unfinished = in_flight_unacked = 0
    killed_attempts: dict[tuple[str, int], float] = {}  # (task, attempt) -> kill time
    for kill in sorted(kills, key=lambda k: k.at):
        for tid in ids:
            for a in ledger.attempts.get(tid, []):
                owner = a.ppid if kill.kind == "worker" else a.pid
                if (owner != kill.pid or a.started > kill.dead
                        or (tid, a.attempt) in killed_attempts):
                    continue
                if a.finished is None or (a.finished > kill.at and a.attempt != accepted[tid]):
                    in_flight_unfinished += 1
                    killed_attempts[(tid, a.attempt)] = kill.at
                elif a.attempt != accepted[tid]:
                    in_flight_unacked += 1
                    killed_attempts[(tid, a.attempt)] = kill.at
    reexec = 0
    unexplained: list[tuple[str, int]] = []
    delays: list[tuple[float, str]] = []  # (finished - kill - duration, task)
    restarts: list[float] = []  # start of the next attempt - kill
    detail: dict[str, str] = {}
    recoveries: list[float] = []  # kill -> pending again (next start minus its queue wait)
    for tid in ids:
        runs = ledger.attempts.get(tid, [])
        reexec += max(0, len(runs) - 1)
        for a in runs:
            if a.attempt == accepted[tid]:
                continue
            at = killed_attempts.get((tid, a.attempt))
            if at is None:
                unexplained.append((tid, a.attempt))
                continue
            # measured kill by kill: to the next attempt (itself killed or not)
            nxt = [b for b in runs if b.started > at]
            if nxt:
                restarts.append(nxt[0].started - at)
                if nxt[0].attempt == accepted[tid] and fields[tid][2]:
                    # the task hash keeps the queue wait of its last attempt only
                    recoveries.append(nxt[0].started - at - int(fields[tid][2]) / 1e6)
                if nxt[0].finished is not None:
                    delays.append((nxt[0].finished - at - durations[tid], tid))
                    detail[tid] = (f"kill at +{at - t0:.2f} s, next attempt started "
                                   f"+{nxt[0].started - at:.2f} s after it, finished "
                                   f"+{nxt[0].finished - at:.2f} s after it "
                                   f"(duration {durations[tid]:g} s)")
    double_finish = sum(1 for t in ids if ledger.finishes(t) > 1)
    never_ran = sum(1 for t in ids if not ledger.attempts.get(t))
    # lease (from the last renewal, before the kill) + one sweep (interval jittered x1.2)
    # + retry backoff + 0.5 s for promotion and a loaded 2-core machine
    bound = LEASE + 1.2 * RECOVERY + BACKOFF_MAX + 0.5
    max_recovery = max(recoveries, default=0.0)
    max_delay = max((d for d, _ in delays), default=0.0)
    slot_delays = [d for d, t in delays]
    poison_runs = len(ledger.attempts.get(poison, []))
    exit_runs = len(ledger.attempts.get(poison_exit, []))

    table(f"Worker kills ({'quick' if args.quick else 'full'}; lease {LEASE:g} s, heartbeat "
          f"{HEARTBEAT:g} s, recovery {RECOVERY:g} s, backoff max {BACKOFF_MAX:g} s)", [
        ("tasks submitted", n, ""),
        ("workers x slots", f"{workers_n}x{conc}", ""),
        ("supervisor kills (kill -9, restarted)", sum(k.kind == "worker" for k in kills), ""),
        ("slot kills (kill -9, replaced)", sum(k.kind == "slot" for k in kills), ""),
        ("max supervisor kill -> its slots gone (s)", f"{max(orphan_exits, default=0):.3f}",
         "<= 1"),
        ("run time to drain (s)", f"{drained - t0:.0f}", ""),
        ("tasks completed", sum(s == "completed" for s in states.values()), f"== {n}"),
        ("tasks lost", len(lost), "== 0"),
        ("tasks never started (ledger)", never_ran, "== 0"),
        ("tasks completed twice (events > 1)", len(twice), "== 0"),
        ("tasks with no completion event", len(no_event), "== 0"),
        ("completion counter (success)", counter, f"== {n}"),
        ("in flight at kills: unfinished", in_flight_unfinished, ""),
        ("in flight at kills: finished, ack not accepted", in_flight_unacked, ""),
        ("re-executions (extra attempts)", reexec, "<= in flight"),
        ("re-executions not explained by a kill", len(unexplained), "== 0"),
        ("tasks whose handler finished twice", double_finish, ""),
        ("re-executed tasks measured", len(slot_delays), ""),
        ("max kill -> task pending again (s)", f"{max_recovery:.2f}", f"<= {bound:g}"),
        ("max kill -> next attempt started (s)", f"{max(restarts, default=0):.2f}",
         "+ queue wait"),
        ("max (re-finish - kill - duration) (s)", f"{max_delay:.2f}",
         f"<= {bound:g} + queue wait"),
        ("poison: attempts (ledger / record)", f"{poison_runs} / {poison_f[1]}",
         f"== {POISON_RETRIES + 1}"),
        ("poison: state, in DLQ stream", f"{poison_f[0]}, {poison in dlq_ids}",
         "dead_letter, True"),
        ("exit(0) poison: attempts (ledger / record)", f"{exit_runs} / {exit_f[1]}",
         f"== {POISON_RETRIES + 1}"),
        ("exit(0) poison: state, in DLQ stream", f"{exit_f[0]}, {poison_exit in dlq_ids}",
         "dead_letter, True"),
        ("slot processes alive at the end", slots_alive, f"== {workers_n * conc}"),
    ])
    if delays:
        worst = max(delays)[1]
        print(f"slowest recovery: task {worst}: {detail[worst]}")
    if unexplained[:5]:
        print("unexplained re-executions (first 5):", unexplained[:5])
    return verdict([
        ("0 tasks lost", not lost and never_ran == 0),
        ("0 tasks completed twice", not twice and counter == n and not no_event),
        ("re-executions <= attempts in flight at the kills",
         reexec <= in_flight_unfinished + in_flight_unacked),
        ("every re-execution is an attempt of a killed process", not unexplained),
        (f"killed tasks back in the queue within {bound:g} s of the kill", max_recovery <= bound),
        ("poison task ran max_retries + 1 times and is in the DLQ",
         poison_runs == POISON_RETRIES + 1 and poison_f[1] == str(POISON_RETRIES + 1)
         and poison_f[0] == "dead_letter" and poison in dlq_ids),
        ("exit(0) poison task ran max_retries + 1 times and is in the DLQ",
         exit_runs == POISON_RETRIES + 1 and exit_f[1] == str(POISON_RETRIES + 1)
         and exit_f[0] == "dead_letter" and poison_exit in dlq_ids),
        ("every worker still has all its slots", slots_alive == workers_n * conc),
        ("slots exit within 1 s of their supervisor's death",
         max(orphan_exits, default=0) <= 1.0),
    ])


def wait_gone(pids: list[int], timeout: float) -> float:
    """When the last of ``pids`` was seen gone (a zombie counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            break
        time.sleep(0.005)
    return time.time()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def with_suppress_kill(pid: int) -> None:
    import contextlib
    import os

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
