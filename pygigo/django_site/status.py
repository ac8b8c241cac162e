"""What ``pygigo status``, ``manage.py pygigo_status`` and the dashboard report: queues (from
the broker through the adapter contract, as the metrics), workers (their heartbeat files),
the scheduler's leader and schedules, the outbox backlog, and readiness.

Unhealthy (non-zero exit): a readiness check fails (database, migrations, broker), a worker's
heartbeat is stale (its consumers stopped fetching, or it died), or a queue's oldest ready
message is older than ``max_age_s`` when given. Dead letters and the outbox backlog are
reported but are not, by themselves, a reason to restart anything.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pygigo.platform import liveness
from pygigo.platform.cron import describe
from pygigo.platform.metrics.exposition import queue_stats
from pygigo.platform.scheduler_cmd import all_schedules, load_store

from . import outbox
from .observability import readiness


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else None


def queues() -> list[dict[str, Any]]:
    return [{"queue": queue, **vars(stats)} for queue, stats in queue_stats().items()]


def scheduler() -> dict[str, Any]:
    """The lease holder and every schedule with its last and next run."""
    store = load_store()
    now = datetime.now(UTC)
    rows = []
    for name, spec in sorted(all_schedules(store).items()):
        upcoming = describe(spec.slots, now, 1) if spec.enabled else []
        rows.append(
            {
                "name": name,
                "function": spec.function,
                "expression": spec.expression,
                "enabled": spec.enabled,
                "last_run": _iso(store.last_fired(name)),
                "next_run": _iso(upcoming[0]) if upcoming else None,
            }
        )
    return {"leader": store.lease_holder(), "schedules": rows}


def collect(*, max_age_s: float | None = None, workers_only: bool = False) -> dict[str, Any]:
    """The whole report (JSON-able), with ``healthy`` and the ``problems`` that decided it."""
    workers = list(liveness.read_heartbeats())
    problems = [
        f"worker {w['host']}/{w['pid']}: no fetch for {w['age_s']:.0f}s (consumers stuck, or the process died)"
        for w in workers
        if w["stale"]
    ]
    report: dict[str, Any] = {"workers": workers}
    if workers_only:
        if not workers:
            problems.append("no worker heartbeat: no worker runs here (or PYGIGO_HEARTBEAT_DIR differs)")
    else:
        checks = readiness()
        problems += [f"{name}: {check['detail']}" for name, check in checks.items() if not check["ok"]]
        report["checks"] = checks
        report["queues"] = queues() if checks["broker"]["ok"] else []
        for row in report["queues"]:
            age = row["oldest_ready_age_s"]
            if max_age_s is not None and age is not None and age > max_age_s:
                problems.append(
                    f"queue {row['queue']}: oldest ready message waits {age:.0f}s (> {max_age_s:g}s)"
                )
        if checks["database"]["ok"] and checks["migrations"]["ok"]:
            report["outbox_backlog"] = outbox.pending()
            report["scheduler"] = scheduler()
    report["problems"] = problems
    report["healthy"] = not problems
    return report


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    cells = [header, *[tuple(str(cell) for cell in row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    return lines if rows else [*lines, "(none)"]


def render(report: dict[str, Any]) -> str:
    """The report as readable text (``--json`` prints the dict instead)."""
    lines = [f"Pygigo status: {'healthy' if report['healthy'] else 'UNHEALTHY'}"]
    lines += [f"  ! {problem}" for problem in report["problems"]]
    if "queues" in report:
        lines += ["", "Queues"]
        lines += _table(
            ("QUEUE", "READY", "DELAYED", "DEAD", "OLDEST READY"),
            [
                (q["queue"], q["ready"], q["delayed"], q["dead"], _age(q["oldest_ready_age_s"]))
                for q in report["queues"]
            ],
        )
    lines += ["", "Workers"]
    lines += _table(
        ("HOST", "PID", "QUEUES", "LAST HEARTBEAT", "STATE"),
        [
            (
                w["host"],
                w["pid"],
                ",".join(w["queues"]),
                f"{_age(w['age_s'])} ago",
                "STALE" if w["stale"] else "ok",
            )
            for w in report["workers"]
        ],
    )
    if "scheduler" in report:
        lines += ["", f"Scheduler leader: {report['scheduler']['leader'] or 'none'}"]
        lines += _table(
            ("SCHEDULE", "FUNCTION", "LAST RUN", "NEXT RUN"),
            [
                (s["name"], s["function"], s["last_run"] or "-", s["next_run"] or "-")
                for s in report["scheduler"]["schedules"]
            ],
        )
    if "outbox_backlog" in report:
        lines += ["", f"Outbox backlog: {report['outbox_backlog']}"]
    return "\n".join(lines)


def run(out: Any, *, as_json: bool, max_age_s: float | None, workers_only: bool) -> int:
    """Print the report; the exit code is 0 when healthy, 1 otherwise."""
    report = collect(max_age_s=max_age_s, workers_only=workers_only)
    out.write((json.dumps(report, indent=2) if as_json else render(report)) + "\n")
    return 0 if report["healthy"] else 1
