"""Where a workflow run's wall time went: compute, or cores left idle by the schedule.

Reads a Snakemake log (the newest `.snakemake/log/*.snakemake.log` unless given), pairs each job's
start with its `Finished jobid` line and prints, per rule, the jobs and their wall seconds, then
the run's wall time, the job-seconds, the cores it was given and how busy they were: the
core-seconds no job held, and how much of it fell in the tail (after the last job started),
where only the critical path's last jobs were left to run. A job is counted on `threads` cores
(its log entry says so when above 1).

    python bench/schedule.py [.snakemake/log/<run>.snakemake.log] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
RULE = re.compile(r"^(?:local)?rule (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
THREADS = re.compile(r"^\s+threads: (\d+)$")
FINISHED = re.compile(r"^Finished jobid: (\d+)")
CORES = re.compile(r"^Provided cores: (\d+)$")


@dataclass
class Job:
    rule: str
    start: float
    end: float | None = None
    threads: int = 1
    finished: bool = False


def parse(lines: list[str]) -> tuple[dict[int, Job], int]:
    """Jobs by id (start, end in seconds since the epoch; rule; threads) and the cores given. A
    job still running when the log ends (a run in progress, or killed) ends at the last stamp."""
    jobs: dict[int, Job] = {}
    cores, stamp, rule, current = 1, None, None, None
    for line in lines:
        if match := STAMP.match(line):
            stamp = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y").timestamp()
        elif match := CORES.match(line):
            cores = int(match.group(1))
        elif match := RULE.match(line):
            rule = match.group(1)
        elif (match := JOBID.match(line)) and rule is not None and stamp is not None:
            current = int(match.group(1))
            jobs[current] = Job(rule, stamp)
            rule = None
        elif (match := THREADS.match(line)) and current in jobs:
            jobs[current].threads = int(match.group(1))
        elif (match := FINISHED.match(line)) and stamp is not None \
                and (job := jobs.get(int(match.group(1)))) is not None:
            job.end, job.finished = stamp, True
    for job in jobs.values():
        if not job.finished:
            job.end = stamp
    return jobs, cores


def summarise(jobs: dict[int, Job], cores: int) -> dict:
    """Per-rule wall seconds and the run's use of its cores (1-second resolution, as the log)."""
    start = min(j.start for j in jobs.values())
    end = max(j.end for j in jobs.values())
    last_start = max(j.start for j in jobs.values() if j.rule != "all")
    busy = [0] * int(end - start)  # core-seconds in use, second by second
    for job in jobs.values():
        for second in range(int(job.start - start), int(job.end - start)):
            busy[second] += min(job.threads, cores)
    idle = [max(cores - b, 0) for b in busy]
    tail_from = int(last_start - start)
    by_rule: dict[str, list[float]] = defaultdict(list)
    for job in jobs.values():
        by_rule[job.rule].append(job.end - job.start)
    return {
        "cores": cores, "jobs": len(jobs), "wall_s": end - start,
        "still_running": [j.rule for j in jobs.values() if not j.finished],
        "job_s": sum(sum(v) for v in by_rule.values()),
        "idle_core_s": sum(idle), "idle_core_s_in_tail": sum(idle[tail_from:]),
        "tail_s": end - last_start,
        "rules": {rule: {"jobs": len(v), "wall_s": sum(v), "longest_s": max(v)}
                  for rule, v in sorted(by_rule.items(), key=lambda kv: -sum(kv[1]))},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", nargs="?", help="a Snakemake log (default: the newest)")
    parser.add_argument("--json", help="also write the summary here")
    args = parser.parse_args()
    path = Path(args.log) if args.log else max(Path(".snakemake/log").glob("*.snakemake.log"),
                                                 key=lambda p: p.stat().st_mtime)
    jobs, cores = parse(path.read_text(errors="replace").splitlines())
    if not jobs:
        raise SystemExit(f"{path}: no jobs in this log")
    summary = summarise(jobs, cores)
    running = summary["still_running"]
    print(f"{path}: {summary['jobs']} jobs on {cores} cores"
          + (f" ({len(running)} still running when the log ends: {', '.join(running)})"
             if running else ""))
    print(f"{'rule':32} {'jobs':>4} {'wall s':>8} {'longest s':>9}")
    for rule, row in summary["rules"].items():
        print(f"{rule:32} {row['jobs']:>4} {row['wall_s']:>8.0f} {row['longest_s']:>9.0f}")
    wall, capacity = summary["wall_s"], summary["wall_s"] * cores
    print(f"wall {wall:.0f} s; job-s {summary['job_s']:.0f}; core-s {capacity:.0f}, of them idle "
          f"{summary['idle_core_s']:.0f} ({summary['idle_core_s'] / capacity:.0%}), "
          f"{summary['idle_core_s_in_tail']:.0f} in the last {summary['tail_s']:.0f} s "
          f"(after the last job started)")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
