"""Rolling restarts: SIGTERM workers one after another under load, restart each after it exits.

    .venv/bin/python reliability/rolling_restarts.py           # 20 SIGTERMs
    .venv/bin/python reliability/rolling_restarts.py --quick   # 5 SIGTERMs (CI)

Tasks (``rel.sleep``: 90 % take 0.05-1 s, 10 % take 4-6 s, longer than the
3 s grace) are submitted at a steady rate.  Each round a random worker gets
SIGTERM; it stops fetching, lets its slots finish within the grace, puts back
what is still running, deregisters and exits; then it is restarted.  The
ledger outside Redis (reliability/handlers.py) shows which attempts finished
inside the grace and which were cut.

Pass: 0 lost; 0 completed twice; 0 re-executions of tasks whose attempt
finished inside the grace period; every re-execution is an attempt cut at the
end of a grace; every worker exits 0 within grace + 5 s.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import threading
import time
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

GRACE = 3.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the CI form")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if args.quick:
        n, workers_n, conc, terms, rate, gap = 200, 3, 4, 5, 12.0, 1.0
    else:
        n, workers_n, conc, terms, rate, gap = 2_000, 4, 8, 20, 20.0, 2.0
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    run = Run("rolling")
    env = fast_env(lease=5.0, heartbeat=1.0, recovery=1.0, grace=GRACE)
    server = start_redis(run)
    setup_django(env)
    from tasks_app import producer

    print(f"rolling restarts: {n} tasks, {workers_n} workers x {conc} slots, {terms} SIGTERMs, "
          f"grace {GRACE:g} s, seed {seed}, dir {run.dir}")
    events = CompletionEvents(server.url)
    workers: list[Proc] = [start_worker(run, env, conc, f"r{i}") for i in range(workers_n)]
    for w in workers:
        wait_slots(w, conc)
    ids: list[str] = []
    stops: list[tuple[int, float, float, int | None]] = []  # pid, sigterm, exit, code
    t0 = time.time()

    def submit() -> None:
        sent = 0
        start = time.monotonic()
        while sent < n:
            due = int((time.monotonic() - start) * rate) + 1
            batch = []
            for _ in range(min(due - sent, n - sent)):
                secs = (round(rng.uniform(4.0, 6.0), 3) if rng.random() < 0.1
                        else round(rng.uniform(0.05, 1.0), 3))
                batch.append({"type": "rel.sleep", "payload": {"seconds": secs},
                              "max_retries": 25})
            if batch:
                ids.extend(t.id for t in producer.enqueue_many(batch))
                sent += len(batch)
            time.sleep(0.05)

    submitter = threading.Thread(target=submit, daemon=True)
    submitter.start()
    try:
        time.sleep(gap)
        for _ in range(terms):
            i = rng.randrange(len(workers))
            victim = workers[i]
            at = time.time()
            victim.signal(signal.SIGTERM)
            try:
                code: int | None = victim.proc.wait(GRACE + 20)
            except Exception:  # noqa: BLE001
                code = None
            stops.append((victim.pid, at, time.time(), code))
            victim.kill_all()
            workers[i] = start_worker(run, env, conc, f"r{i}")
            wait_slots(workers[i], conc)
            time.sleep(rng.uniform(0.5 * gap, 1.5 * gap))
        submitter.join()

        def done() -> bool:
            return all(v[0] == "completed" for v in task_fields(ids, "state").values())

        wait_until(done, timeout=120 if not args.quick else 60)
        time.sleep(1.0)
        drained = time.time()
        fields = task_fields(ids, "state", "attempts")
        counter = completed_success_counter()
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
    finished_in_grace = cut = 0
    reexec_after_finish: list[str] = []
    cut_attempts: set[tuple[str, int, int]] = set()
    for pid, at, exited, _code in stops:
        for tid in ids:
            for a in ledger.attempts.get(tid, []):
                if a.ppid != pid or a.started > exited:
                    continue
                if a.finished is not None and at <= a.finished <= exited:
                    finished_in_grace += 1
                    later = [b for b in ledger.attempts[tid] if b.started > a.started]
                    if later:
                        reexec_after_finish.append(tid)
                elif a.finished is None or a.finished > exited:
                    cut += 1
                    cut_attempts.add((tid, a.attempt, a.pid))
    reexec = 0
    unexplained: list[str] = []
    for tid in ids:
        runs = ledger.attempts.get(tid, [])
        reexec += max(0, len(runs) - 1)
        for a in runs[:-1]:  # every attempt but the last one must have been cut by a stop
            if (tid, a.attempt, a.pid) not in cut_attempts:
                unexplained.append(tid)
    exit_codes = [c for *_, c in stops]
    stop_times = [e - a for _, a, e, _ in stops]
    table(f"Rolling restarts ({'quick' if args.quick else 'full'}; grace {GRACE:g} s)", [
        ("tasks submitted", n, ""),
        ("workers x slots", f"{workers_n}x{conc}", ""),
        ("SIGTERMs (each worker restarted after exit)", len(stops), ""),
        ("run time to drain (s)", f"{drained - t0:.0f}", ""),
        ("worker exit codes", ",".join(map(str, sorted(set(exit_codes), key=str))), "all 0"),
        ("max SIGTERM -> exit (s)", f"{max(stop_times):.2f}", f"<= {GRACE + 5:g}"),
        ("tasks completed", sum(s == "completed" for s in states.values()), f"== {n}"),
        ("tasks lost", len(lost), "== 0"),
        ("tasks completed twice (events > 1)", len(twice), "== 0"),
        ("tasks with no completion event", len(no_event), "== 0"),
        ("completion counter (success)", counter, f"== {n}"),
        ("attempts finished inside a grace", finished_in_grace, ""),
        ("  of which re-executed", len(reexec_after_finish), "== 0"),
        ("attempts cut at the end of a grace (put back)", cut, ""),
        ("re-executions (extra attempts)", reexec, "<= cut"),
        ("re-executions not explained by a cut", len(unexplained), "== 0"),
    ])
    return verdict([
        ("0 tasks lost", not lost),
        ("0 tasks completed twice", not twice and not no_event and counter == n),
        ("0 re-executions of tasks that finished inside the grace", not reexec_after_finish),
        ("every re-execution is an attempt cut at the end of a grace",
         not unexplained and reexec <= cut),
        ("every worker exited 0 within grace + 5 s",
         all(c == 0 for c in exit_codes) and max(stop_times) <= GRACE + 5),
    ])


if __name__ == "__main__":
    sys.exit(main())
