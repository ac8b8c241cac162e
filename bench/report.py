"""Ratios, Pygigo targets and the per-broker table."""

from __future__ import annotations

from collections.abc import Sequence

from bench.common import Result

# Targets from DESIGN.md ("Numbers to reach").
ENQ_VS_DRAMATIQ = 0.9
DRAIN_VS_DRAMATIQ = 0.9
DRAIN_VS_CELERY = 2.5
ENQ_VS_PIKA_CONFIRMS = 0.9

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
    if row.key != "pygigo":
        return ""
    if row.status != "ok":
        return row.status
    base, celery, pika_c = by_key.get("raw_dramatiq"), by_key.get("celery"), by_key.get("pika_confirms")
    checks: list[tuple[str, float | None, float]] = [
        ("enq", _ratio(row.enqueue_rate, base and base.enqueue_rate), ENQ_VS_DRAMATIQ),
        ("drain", _ratio(row.drain_rate, base and base.drain_rate), DRAIN_VS_DRAMATIQ),
        ("drain/celery", _ratio(row.drain_rate, celery and celery.drain_rate), DRAIN_VS_CELERY),
    ]
    if row.broker == "rabbitmq":
        vs_pika = _ratio(row.enqueue_rate, pika_c and pika_c.enqueue_rate)
        checks.append(("enq/pika+c", vs_pika, ENQ_VS_PIKA_CONFIRMS))
    missed = [name for name, value, goal in checks if value is not None and value < goal]
    unknown = [name for name, value, _ in checks if value is None]
    verdict = "MISS: " + ", ".join(missed) if missed else "PASS"
    return verdict + (f" (no baseline: {', '.join(unknown)})" if unknown else "")


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


def table(broker: str, results: Sequence[Result], messages: int) -> str:
    """A Markdown table (readable as plain text too)."""
    body = rows(results)
    widths = [max(len(str(c)) for c in col) for col in zip(HEADERS, *body, strict=False)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    title = f"### {broker} ({messages:,} no-op messages)"
    return "\n".join([title, "", line(HEADERS), sep, *(line(r) for r in body)])
