"""Schemathesis against every operation of a live daphne with auth on, under several
credentials (valid admin key, valid client key, invalid key, garbage JWT, none).

Starts its own redis-server, migrated SQLite database and daphne (the real ASGI
stack), runs the schemathesis CLI once per credential with every check but
``use_after_free`` (see tests/test_api_schemathesis.py), reads each run's HAR and
prints the requests by status and by operation.  Exits non-zero on any 5xx, any
schemathesis failure (schema violation) or fewer requests than ``--min-requests``.

    .venv/bin/python -m reliability.fuzz_api            # full: >= 5,000 requests
    .venv/bin/python -m reliability.fuzz_api --quick    # CI: a few hundred
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
ST_CONFIG = ROOT / "reliability" / "schemathesis.toml"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_project.settings")

CLIENT_KEY = "fuzz-client-key-0123456789abcdef"
ADMIN_KEY = "fuzz-admin-key-0123456789abcdef"
CREDENTIALS: dict[str, list[str]] = {
    "admin key": [f"X-API-Key: {ADMIN_KEY}"],
    "client key": [f"X-API-Key: {CLIENT_KEY}"],
    "invalid key": ["X-API-Key: not-a-key-anybody-issued"],
    "garbage jwt": ["Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"],
    "none": [],
}


def operations(schema: dict[str, Any]) -> list[tuple[str, re.Pattern[str], str]]:
    """(method, path regex, label) for every operation of the OpenAPI schema."""
    found = []
    for template, item in schema["paths"].items():
        regex = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", re.escape(template)
                                        .replace(r"\{", "{").replace(r"\}", "}")) + "$")
        for method in item:
            if method in ("get", "post", "put", "patch", "delete"):
                found.append((method.upper(), regex, f"{method.upper()} {template}"))
    return found


def label_of(ops: list[tuple[str, re.Pattern[str], str]], method: str, url: str) -> str:
    path = re.sub(r"^https?://[^/]+", "", url).split("?")[0]
    matching = [(m, label) for m, regex, label in ops if regex.match(unquote(path))]
    for op_method, label in matching:
        if op_method == method:
            return label
    if matching:
        return f"{method} {matching[0][1].split(' ', 1)[1]} (method not in the schema)"
    return f"{method} {path} (path not in the schema)"


def run_schemathesis(url: str, headers: list[str], examples: int, har: Path,
                     seed: int) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(ST_CONFIG),
               "run", f"{url}/api/schema/",
               "--max-examples", str(examples), "--workers", "2",
               "--suppress-health-check", "all", "--request-timeout", "10", "--no-color",
               "--seed", str(seed), "--report", "har", "--report-har-path", str(har)]
    for header in headers:
        command += ["--header", header]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False,
                          timeout=3600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI size (10 examples per run)")
    parser.add_argument("--examples", type=int, help="max examples per operation and run")
    parser.add_argument("--min-requests", type=int, help="fail below this many requests")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", action="append", choices=list(CREDENTIALS),
                        help="run only these credentials (repeatable)")
    args = parser.parse_args(argv)
    examples = args.examples or (10 if args.quick else 60)
    minimum = args.min_requests if args.min_requests is not None else (
        200 if args.quick else 5000)

    import django

    from tasks_app.devserver.redis import EmbeddedRedis

    work = Path(tempfile.mkdtemp(prefix="tq-fuzz-"))
    redis = EmbeddedRedis(str(work / "redis"))
    redis.start()
    os.environ["REDIS_URL"] = redis.url
    django.setup()
    from tests.factories import open_broker, register
    from tests.servers import LiveServer

    database = work / "db.sqlite3"
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   env={**os.environ, "DATABASE_PATH": str(database)}, check=True)
    env = {"DATABASE_PATH": str(database), "REDIS_URL": redis.url,
           "TASKQUEUE_AUTH_ENABLED": "1", "TASKQUEUE_API_KEYS": CLIENT_KEY,
           "TASKQUEUE_ADMIN_API_KEYS": ADMIN_KEY, "DJANGO_LOG_LEVEL": "WARNING",
           "TASKQUEUE_DEMO_HANDLERS": "1"}  # the schema then names the types it accepts
    by_status: collections.Counter[int] = collections.Counter()
    by_operation: dict[str, collections.Counter[int]] = collections.defaultdict(
        collections.Counter)
    failures: list[str] = []
    started = time.monotonic()
    try:
        with LiveServer(work, env) as server:
            import requests

            schema = requests.get(f"{server.url}/api/schema/?format=json",
                                  headers={"Accept": "application/json"}, timeout=30)
            ops = operations(json.loads(schema.text) if schema.text.lstrip().startswith("{")
                             else __import__("yaml").safe_load(schema.text))
            for name, headers in CREDENTIALS.items():
                if args.only and name not in args.only:
                    continue
                with open_broker(redis.url) as broker:
                    register(broker, "worker-fuzz")
                har = work / f"{name.replace(' ', '-')}.har"
                result = run_schemathesis(server.url, headers, examples, har, args.seed)
                summary = [ln for ln in result.stdout.splitlines() if " generated, " in ln]
                print(f"[{name}] exit {result.returncode}: "
                      f"{summary[-1].strip() if summary else '(no summary)'}", flush=True)
                if result.returncode != 0:
                    failures.append(f"{name}: schemathesis exited {result.returncode}\n"
                                    + (result.stdout + result.stderr)[-4000:])
                entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
                for entry in entries:
                    status = int(entry["response"]["status"])
                    label = label_of(ops, entry["request"]["method"], entry["request"]["url"])
                    by_status[status] += 1
                    by_operation[label][status] += 1
            log = server.log_path.read_text(errors="replace")
    finally:
        redis.stop()
    total = sum(by_status.values())
    print(f"\n{total} requests in {time.monotonic() - started:.0f} s, by status:")
    for status, count in sorted(by_status.items()):
        print(f"  {status}: {count}")
    print("by operation:")
    for label in sorted(by_operation):
        counts = by_operation[label]
        detail = ", ".join(f"{s}: {n}" for s, n in sorted(counts.items()))
        print(f"  {label:50s} {sum(counts.values()):6d}  ({detail})")
    server_errors = sum(n for s, n in by_status.items() if s >= 500)
    tracebacks = log.count("Traceback")
    print(f"5xx: {server_errors}; tracebacks in the daphne log: {tracebacks}; "
          f"schemathesis failures: {len(failures)}")
    for failure in failures:
        print("-----", failure, sep="\n")
    if server_errors or failures or tracebacks:
        return 1
    if total < minimum:
        print(f"only {total} requests, fewer than {minimum}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
