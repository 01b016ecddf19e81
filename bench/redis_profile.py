"""Redis work per task over a phase: INFO commandstats (calls, usec) and INFO cpu.

    profile = Profiler(client)   # CONFIG RESETSTAT, then reads INFO cpu
    ...                          # the phase
    result = profile.stop()      # reads INFO commandstats and INFO cpu again
    print_profile("drain", result, tasks)

Commands that scripts run are counted by Redis under their own names as well as inside
the EVALSHA that ran them (whose usec includes theirs). The bench's own INFO and CONFIG
calls are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CPU_FIELDS = ("used_cpu_sys", "used_cpu_user", "used_cpu_sys_main_thread",
              "used_cpu_user_main_thread")
OWN_COMMANDS = {"info", "config"}
SCRIPT_COMMANDS = {"evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro"}


@dataclass(frozen=True)
class PhaseProfile:
    """What Redis did during one phase."""

    commands: dict[str, tuple[int, int]]  # name -> (calls, usec)
    cpu: dict[str, float]  # CPU_FIELDS present on this server -> seconds

    @property
    def total_calls(self) -> int:
        return sum(calls for calls, _ in self.commands.values())

    @property
    def cpu_seconds(self) -> float:
        return self.cpu.get("used_cpu_sys", 0.0) + self.cpu.get("used_cpu_user", 0.0)

    @property
    def main_thread_cpu_seconds(self) -> float | None:
        if "used_cpu_sys_main_thread" not in self.cpu:
            return None
        return self.cpu["used_cpu_sys_main_thread"] + self.cpu["used_cpu_user_main_thread"]


class Profiler:
    """Resets Redis's command statistics now; ``stop()`` returns what happened since."""

    def __init__(self, client: Any) -> None:
        self.client = client
        client.config_resetstat()
        self.cpu_before = read_cpu(client)

    def stop(self) -> PhaseProfile:
        cpu_after = read_cpu(self.client)
        cpu = {name: cpu_after[name] - self.cpu_before[name] for name in cpu_after}
        return PhaseProfile(read_commandstats(self.client), cpu)


def read_cpu(client: Any) -> dict[str, float]:
    info = client.info("cpu")
    return {name: float(info[name]) for name in CPU_FIELDS if name in info}


def read_commandstats(client: Any) -> dict[str, tuple[int, int]]:
    """Calls and usec per command (subcommands as ``config|get``), without the bench's own."""
    stats = {}
    for key, value in client.info("commandstats").items():
        name = key.removeprefix("cmdstat_").lower()
        if name.split("|")[0] not in OWN_COMMANDS:
            stats[name] = (int(value["calls"]), int(value["usec"]))
    return stats


def cpu_us_per_task(profile: PhaseProfile, tasks: int) -> float:
    return profile.cpu_seconds * 1e6 / tasks


def print_profile(title: str, profile: PhaseProfile, tasks: int) -> None:
    """The per-command table of one phase, per task, and its totals."""
    print(f"  {title}: Redis work per task ({tasks:,} tasks)")
    print(f"    {'command':<22}{'calls/task':>11}{'usec/task':>11}")
    ordered = sorted(profile.commands.items(), key=lambda item: (-item[1][0], item[0]))
    shown = [(name, calls, usec) for name, (calls, usec) in ordered
             if calls / tasks >= 0.01 or usec / tasks >= 0.1]
    for name, calls, usec in shown:
        note = "  (includes the commands it ran)" if name in SCRIPT_COMMANDS else ""
        print(f"    {name:<22}{calls / tasks:>11.2f}{usec / tasks:>11.2f}{note}")
    rest = [(calls, usec) for name, (calls, usec) in ordered if name not in
            {row[0] for row in shown}]
    if rest:
        print(f"    {f'{len(rest)} others':<22}{sum(c for c, _ in rest) / tasks:>11.2f}"
              f"{sum(u for _, u in rest) / tasks:>11.2f}")
    script_usec = sum(usec for name, (_, usec) in profile.commands.items()
                      if name in SCRIPT_COMMANDS)
    plain_usec = sum(usec for name, (_, usec) in profile.commands.items()
                     if name not in SCRIPT_COMMANDS)
    print(f"    {'total commands':<22}{profile.total_calls / tasks:>11.2f}"
          f"   (usec/task: EVALSHA/EVAL {script_usec / tasks:.2f}, their commands included; "
          f"the other rows {plain_usec / tasks:.2f})")
    print(f"    Redis CPU (used_cpu_sys + used_cpu_user): {cpu_us_per_task(profile, tasks):.1f} "
          f"us/task", end="")
    main = profile.main_thread_cpu_seconds
    print(f"; main thread {main * 1e6 / tasks:.1f} us/task" if main is not None else "")
