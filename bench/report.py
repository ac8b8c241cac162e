"""Ratios, Pygigo targets and the tables: per broker, db://, sqs:// (moto), HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench.common import Result

if TYPE_CHECKING:
    from bench.http_bench import HttpResult

# Targets from DESIGN.md ("Numbers to reach").
ENQ_VS_DRAMATIQ = 0.9
DRAIN_VS_DRAMATIQ = 0.9
DRAIN_VS_CELERY = 2.5
ENQ_VS_PIKA_CONFIRMS = 0.9
# django.tasks (issue 12): task.enqueue() and its drain against fn.send() on the same broker.
TASK_ENQ_VS_SEND = 0.8
TASK_DRAIN_VS_SEND = 0.9
#: db:// drain vs raw Dramatiq on Redis in the same run (issue 14).
DB_DRAIN_VS_DRAMATIQ_REDIS = {"postgres": 0.6, "sqlite": 0.5}
#: POST /fn/noop against the reference view (one INSERT + one publish): issue 14.
HTTP_FN_VS_REFERENCE = 0.9
# Prefer: wait round trip (issue 14): (p50, p99) ceilings in ms per broker; None: no ceiling.
WAIT_TARGETS_MS: dict[str, tuple[float, float | None]] = {
    "redis": (8.0, 25.0),
    "rabbitmq": (8.0, 25.0),
    "sqlite": (30.0, None),
}
DRAIN_METRICS_VS_PLAIN = 0.95

HEADERS = (
    "System",
    "Enqueue msg/s",
    "Drain msg/s",
    "Enq/Dramatiq",
    "Drain/Dramatiq",
    "Drain/Celery",
    "Target",
)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt(x: float | None, ratio: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:.2f}x" if ratio else f"{x:,.0f}"


def target(row: Result, by_key: dict[str, Result]) -> str:
    """PASS/MISS for Pygigo rows (lists the missed targets), empty for the others."""
    if row.key == "pygigo_metrics" and row.status == "ok":
        plain = by_key.get("pygigo")
        vs_plain = _ratio(row.drain_rate, plain and plain.drain_rate)
        if vs_plain is None:
            return "no baseline (Pygigo row)"
        verdict = "PASS" if vs_plain >= DRAIN_METRICS_VS_PLAIN else "MISS"
        return f"{verdict}: drain {vs_plain:.2f}x Pygigo (>= {DRAIN_METRICS_VS_PLAIN})"
    if row.key not in ("pygigo", "django_tasks"):
        return ""
    if row.status != "ok":
        return row.status
    base, celery, pika_c = by_key.get("raw_dramatiq"), by_key.get("celery"), by_key.get("pika_confirms")
    if row.key == "django_tasks":  # against fn.send() on the same broker
        fn, tracked = by_key.get("pygigo"), by_key.get("pygigo_tracked")
        checks: list[tuple[str, float | None, float]] = [
            ("enq/fn.send", _ratio(row.enqueue_rate, fn and fn.enqueue_rate), TASK_ENQ_VS_SEND),
            ("drain/fn.send", _ratio(row.drain_rate, fn and fn.drain_rate), TASK_DRAIN_VS_SEND),
        ]
    else:
        checks = [
            ("enq", _ratio(row.enqueue_rate, base and base.enqueue_rate), ENQ_VS_DRAMATIQ),
            ("drain", _ratio(row.drain_rate, base and base.drain_rate), DRAIN_VS_DRAMATIQ),
            ("drain/celery", _ratio(row.drain_rate, celery and celery.drain_rate), DRAIN_VS_CELERY),
        ]
    if row.broker == "rabbitmq" and row.key == "pygigo":
        vs_pika = _ratio(row.enqueue_rate, pika_c and pika_c.enqueue_rate)
        checks.append(("enq/pika+c", vs_pika, ENQ_VS_PIKA_CONFIRMS))
    missed = [name for name, value, goal in checks if value is not None and value < goal]
    unknown = [name for name, value, _ in checks if value is None]
    verdict = "MISS: " + ", ".join(missed) if missed else "PASS"
    verdict += f" (no baseline: {', '.join(unknown)})" if unknown else ""
    if row.key == "django_tasks" and tracked is not None:  # context, not a target
        enq, drain = (
            _ratio(row.enqueue_rate, tracked.enqueue_rate),
            _ratio(row.drain_rate, tracked.drain_rate),
        )
        verdict += f"; vs fn.invoke: enq {_fmt(enq, True)}, drain {_fmt(drain, True)}"
    return verdict


def rows(results: Sequence[Result]) -> list[tuple[str, ...]]:
    by_key = {r.key: r for r in results if r.status == "ok"}
    base, celery = by_key.get("raw_dramatiq"), by_key.get("celery")
    out = []
    for r in results:
        if r.status != "ok":
            out.append((r.label, r.status, "-", "-", "-", "-", target(r, by_key) or r.note[:60]))
            continue
        out.append(
            (
                r.label,
                _fmt(r.enqueue_rate),
                _fmt(r.drain_rate),
                _fmt(_ratio(r.enqueue_rate, base and base.enqueue_rate), True),
                _fmt(_ratio(r.drain_rate, base and base.drain_rate), True),
                _fmt(_ratio(r.drain_rate, celery and celery.drain_rate), True),
                target(r, by_key),
            )
        )
    return out


def render(
    title: str, headers: Sequence[str], body: Sequence[Sequence[str]], notes: Sequence[str] = ()
) -> str:
    """A Markdown table (readable as plain text too), with notes below it."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *body, strict=False)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join(
        [title, "", line(headers), sep, *(line(r) for r in body), *(["", *notes] if notes else [])]
    )


def table(broker: str, results: Sequence[Result], messages: int) -> str:
    return render(f"### {broker} ({messages:,} no-op messages)", HEADERS, rows(results))


def _verdict(value: float | None, ok: bool, what: str) -> str:
    return "-" if value is None else ("PASS" if ok else f"MISS: {what}")


def _wait_verdict(p50: float | None, p99: float | None, max_p50: float, max_p99: float | None) -> str:
    if p50 is None or p99 is None:
        return "-"
    misses = [f"p50 > {max_p50:.0f} ms"] if p50 > max_p50 else []
    if max_p99 is not None and p99 > max_p99:
        misses.append(f"p99 > {max_p99:.0f} ms")
    return f"MISS: {', '.join(misses)}" if misses else "PASS"


DB_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def db_table(all_results: Sequence[Result], messages: int) -> str:
    """Both db:// rows; their targets are relative to raw Dramatiq on Redis in this run."""
    base = next(
        (r for r in all_results if r.broker == "redis" and r.key == "raw_dramatiq" and r.status == "ok"), None
    )
    base_drain = base.drain_rate if base else None
    body: list[tuple[str, ...]] = []
    notes: list[str] = []
    for r in (r for r in all_results if r.broker in DB_NAMES):
        name = f"Pygigo db:// {DB_NAMES[r.broker]}"
        label = name if r.key == "pygigo" else f"{name}, {r.label.removeprefix('Pygigo ')}"
        if r.status != "ok":
            body.append((label, r.status, "-", "-", "-"))
            notes.append(f"- {label}: {r.status}: {r.note}")
            continue
        verdict = ""
        if r.key == "pygigo":
            target = DB_DRAIN_VS_DRAMATIQ_REDIS[r.broker]
            ratio = _ratio(r.drain_rate, base_drain)
            ok = ratio is not None and ratio >= target
            verdict = _verdict(ratio, ok, f"drain < {target}x") if base_drain else "no baseline"
        body.append(
            (
                label,
                _fmt(r.enqueue_rate),
                _fmt(r.drain_rate),
                _fmt(_ratio(r.drain_rate, base_drain), True),
                verdict,
            )
        )
        if r.note:
            notes.append(f"- {label}: {r.note}")
        if r.extra.get("duplicates"):
            notes.append(f"- {label}: {r.extra['duplicates']} duplicate deliveries during the drain")
    if base_drain is None:
        notes.append(
            "- no baseline: raw Dramatiq on Redis was not measured in this run (--brokers/--systems)"
        )
    else:
        notes.append(f"- baseline: raw Dramatiq on Redis drained {base_drain:,.0f} msg/s in this run")
    title = f"### db:// broker ({messages:,} no-op messages, worker 2 processes x 8 threads)"
    headers = ("System", "Enqueue msg/s", "Drain msg/s", "Drain/Dramatiq-Redis", "Target")
    pg, sqlite = DB_DRAIN_VS_DRAMATIQ_REDIS["postgres"], DB_DRAIN_VS_DRAMATIQ_REDIS["sqlite"]
    targets = f"- targets: drain >= {pg}x (PostgreSQL), >= {sqlite}x (SQLite) raw Dramatiq on Redis"
    return render(title, headers, body, [targets, *notes])


SQS_LABELS = {"boto3_send": "raw boto3 send_message", "pygigo": "Pygigo send (SendMessage)"}


def sqs_table(results: Sequence[Result], messages: int) -> str:
    base = next((r for r in results if r.key == "boto3_send" and r.status == "ok"), None)
    body: list[tuple[str, ...]] = []
    notes: list[str] = []
    for r in results:
        label = SQS_LABELS.get(r.key, r.label)
        if r.status != "ok":
            body.append((label, r.status, "-", "-"))
            notes.append(f"- {label}: {r.status}: {r.note}")
            continue
        body.append(
            (
                label,
                _fmt(r.enqueue_rate),
                _fmt(r.drain_rate),
                _fmt(_ratio(r.enqueue_rate, base and base.enqueue_rate), True),
            )
        )
    title = (
        f"### sqs:// on moto: EMULATOR (moto) FIGURES, not AWS ({messages:,} no-op messages: fewer than "
        "the other tables, moto is slow)"
    )
    notes.insert(
        0,
        "- moto_server runs in its own process on 127.0.0.1; drain with 2 processes x 8 threads; compare rows "
        "with each other only (AWS adds ~10-20 ms per round trip)",
    )
    return render(title, ("System", "Enqueue msg/s", "Drain msg/s", "Enq/boto3"), body, notes)


def http_tables(results: Sequence[HttpResult], args: Any) -> str:
    out = []
    tp = [r for r in results if r.kind == "throughput"]
    if tp:
        body: list[tuple[str, ...]] = []
        notes: list[str] = []
        for setup in dict.fromkeys(r.setup for r in tp):
            rows = [r for r in tp if r.setup == setup]
            rps = {r.key: r.rps for r in rows if r.status == "ok"}
            for r in rows:
                if r.status != "ok":
                    body.append((setup, r.label, r.status, "-", "-", "-", "-"))
                    notes.append(f"- {setup}, {r.label}: {r.status}: {r.note}")
                    continue
                vs_bare = _ratio(r.rps, rps.get("bare"))
                vs_reference = _ratio(r.rps, rps.get("reference"))
                verdict = ""
                if r.key == "fn":
                    ok = vs_reference is not None and vs_reference >= HTTP_FN_VS_REFERENCE
                    verdict = _verdict(vs_reference, ok, f"< {HTTP_FN_VS_REFERENCE}x reference")
                body.append(
                    (
                        setup,
                        r.label,
                        _fmt(r.rps),
                        str(r.errors),
                        _fmt(vs_bare, True),
                        _fmt(vs_reference, True) if r.key != "bare" else "",
                        verdict,
                    )
                )
                if r.note:
                    notes.append(f"- {setup}, {r.label}: {r.note}")
        title = (
            f"### HTTP throughput (gunicorn -w 2 sync, DEBUG off; {args.http_requests:,} requests per "
            f"endpoint from {args.http_clients} client threads, one connection per request)"
        )
        headers = ("Store, broker", "Endpoint", "Requests/s", "Errors", "vs bare", "vs reference", "Target")
        out.append(render(title, headers, body, notes))
    lat = [r for r in results if r.kind == "latency"]
    if lat:
        body, notes = [], []
        for r in lat:
            if r.status != "ok":
                body.append((r.label, r.status, "-", "-", "-", "-", "-"))
                notes.append(f"- {r.label}: {r.status}: {r.note}")
                continue
            verdict = ""
            if r.key in WAIT_TARGETS_MS:
                verdict = _wait_verdict(r.p50_ms, r.p99_ms, *WAIT_TARGETS_MS[r.key])
            body.append(
                (
                    r.label,
                    str(r.requests),
                    f"{r.p50_ms:.1f}",
                    f"{r.p99_ms:.1f}",
                    f"{r.mean_ms:.1f}",
                    str(r.errors),
                    verdict,
                )
            )
            if r.note:
                notes.append(f"- {r.label}: {r.note}")
        title = (
            f"### Prefer: wait=5 round trip, POST /fn/noop (sequential, up to {args.wait_requests} requests or "
            f"{args.wait_max_s:.0f} s per broker; gunicorn -w 2 + pygigo worker -p 1 -t 4, SQLite invocation store)"
        )
        headers = ("Broker", "Requests", "p50 ms", "p99 ms", "mean ms", "Errors", "Target")
        out.append(render(title, headers, body, notes))
    return "\n\n".join(out)
