"""Workflows under worker kills: a long chain, a wide group with a ``then`` step and a
nested workflow run on real workers while workers are ``kill -9``ed and restarted.

    .venv/bin/python reliability/workflows.py            # chain of 1,000, group of 1,000
    .venv/bin/python reliability/workflows.py --quick    # CI: 100 and 100, 2 kills

Every step is the demo ``count`` handler: add 1 to the sum of its parent results.  So a
chain of N ends at N, a group of N with a ``count`` then ends at N + 1, and any step run
twice to completion, lost, or given wrong or missing parent results changes the figure.

Pass: every workflow ``completed``; every step's task ``completed``; the exact final
figures; extra attempts only on steps a killed worker held (at most the slots x prefetch
of the killed workers: a killed worker's started attempts are recovered, not lost).
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reliability.common import (  # noqa: E402
    Proc,
    Run,
    fast_env,
    setup_django,
    start_redis,
    start_worker,
    wait_slots,
)

LEASE, HEARTBEAT, RECOVERY = 2.0, 0.5, 0.5
PREFETCH = 16


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the CI form")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    n, kills, workers_n, conc = (100, 2, 3, 4) if args.quick else (1000, 8, 4, 4)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    run = Run("workflows")
    env = fast_env(LEASE, HEARTBEAT, RECOVERY)
    server = start_redis(run)
    setup_django(env)
    from tasks_app import producer

    step = producer.step
    print(f"workflows: chain of {n}, group of {n} + then, nested; {workers_n} workers x "
          f"{conc} slots, {kills} kill -9s, seed {seed}, dir {run.dir}")
    workers: list[Proc] = [start_worker(run, env, conc, f"f{i}") for i in range(workers_n)]
    for w in workers:
        wait_slots(w, conc)
    slow = {"seconds": 0.01}
    t0 = time.time()
    chain = producer.chain(*[step("count", slow) for _ in range(n)])
    group = producer.group(*[step("count", slow) for _ in range(n)], then=step("count"))
    # [1, {group: [chain(1, 1), group(1, 1, 1)] then count}, count]:
    #   1 -> members: chain 2, 3; group 2, 2, 2 -> then: 1 + 3 + 6 = 10 -> 11
    nested = producer.chain(
        step("count", slow),
        {"group": [{"chain": [step("count", slow), step("count", slow)]},
                   {"group": [step("count", slow) for _ in range(3)]}],
         "then": step("count")},
        step("count"))
    flows = {"chain": (chain.id, float(n)), "group": (group.id, float(n + 1)),
             "nested": (nested.id, 11.0)}
    killed = 0
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(0.5, 1.5))
            i = rng.randrange(len(workers))
            workers[i].signal(signal.SIGKILL)
            workers[i].kill_all()
            killed += 1
            workers[i] = start_worker(run, env, conc, f"f{i}")
            wait_slots(workers[i], conc)
        deadline = time.time() + (120 if args.quick else 600)
        while time.time() < deadline:
            states = {name: producer.get_workflow(wid).state for name, (wid, _) in flows.items()}
            if all(s in ("completed", "failed", "cancelled") for s in states.values()):
                break
            time.sleep(0.25)
        took = time.time() - t0
        read = {name: producer.get_workflow(wid) for name, (wid, _) in flows.items()}
        finals = {}
        attempts = extra = 0
        not_completed = 0
        for name, flow in read.items():
            last = producer.get(flow.steps[-1].task_id) if flow.state == "completed" else None
            finals[name] = last.result if last else None
            for s in flow.steps:
                if s.state != "completed":
                    not_completed += 1
                    continue
                task = producer.get(s.task_id)
                attempts += task.attempts
                extra += task.attempts - 1
    finally:
        for w in workers:
            w.stop(timeout=10)
        server.stop()

    steps = sum(len(f.steps) for f in read.values())
    bound = killed * conc * PREFETCH
    print(f"ran {steps} steps in {took:.1f} s; {attempts} attempts, {extra} extra after "
          f"{killed} kills (bound {bound})")
    checks = [
        ("every workflow completed",
         all(f.state == "completed" for f in read.values())),
        ("every step's task completed", not_completed == 0),
        ("the final figures are exact (each step counted once, parents in full)",
         all(finals[name] == want for name, (_, want) in flows.items())),
        ("extra attempts only for steps the killed workers held", extra <= bound),
    ]
    for name, flow in read.items():
        print(f"  {name}: {flow.state}, final {finals[name]} (want {flows[name][1]})")
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {label}")
    passed = all(ok for _, ok in checks)
    print(f"RESULT: {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
