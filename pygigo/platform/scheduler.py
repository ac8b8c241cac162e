"""The scheduler process: one APScheduler 3.11 per process, exactly one firing per slot.

Every replica runs the same loop; the store decides who acts:

* **Timer**: an APScheduler ``BackgroundScheduler`` (UTC) holds one job per enabled schedule,
  with the schedule's own trigger (:class:`.cron.SlotTrigger` or the epoch-aligned interval
  trigger), so a slot is acted on the moment it comes. APScheduler is only the alarm clock: a
  firing asks :func:`.cron.slots_to_fire` which slots are due since the schedule's last run
  record, so the timer, the misfire policy and a new leader's catch-up share one rule.
* **Leader lease**: the main loop acquires/renews the lease every ``lease_s / 3``. Only a
  process whose lease is still valid *by its own monotonic clock* fires; so a leader that
  cannot renew (database gone, process paused) stops firing before a follower can take over.
  On becoming leader a process fires whatever the misfire policy says is due.
* **Run record**: before enqueueing a slot the leader inserts the unique (schedule, slot) run
  record and enqueues only if its insert won; the outcome is recorded, a failed enqueue is
  retried by a later tick (never lost), and given up after ``max_attempts`` (logged).
* **Failover** takes at most ``lease_s + lease_s / 3`` (expiry plus a follower's next try):
  the default lease (6 s) keeps that under the grace period (10 s), so the new leader still
  fires the slots that fell in the gap, even under ``misfire="skip"``.
* **Skipped slots**: every slot a misfire policy drops (SKIP: later than the grace period;
  ONCE: all but the latest; CATCH_UP: beyond its cap) is logged with the reason and counted
  in :data:`SKIPPED_SLOTS` (by schedule and policy), never dropped silently.
* **Changes**: every ``poll_s`` the loop reads the store's cheap ``changes_token`` and, when
  it moved, reloads stored schedules and resyncs the APScheduler jobs (no restart).

Thread model: APScheduler's pool runs the firings; the main loop (``run``) does lease, reload
and retries. Both go through ``fire``, which is safe to call concurrently (run records dedupe).
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from . import metrics
from .cron import Misfire, slots_to_fire
from .registry import registry
from .schedule_store import ScheduleStore
from .schedules import IntervalSchedule, ScheduleConfigError, ScheduleRegistry, ScheduleSpec, schedules

logger = logging.getLogger("pygigo.scheduler")

Clock = Callable[[], datetime]

DEFAULT_LEASE_S = 6.0
DEFAULT_GRACE_S = 10.0
#: Slots dropped by a misfire policy, by (schedule, policy), since the process started.
SKIPPED_SLOTS: Counter[tuple[str, str]] = Counter()
#: Most skipped slots enumerated per look (a schedule off for months must not stall a tick).
_SKIP_SCAN_LIMIT = 10_000


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_holder_id() -> str:
    """Unique per process and readable in the lease row: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _signature(spec: ScheduleSpec) -> str:
    """What the APScheduler job depends on: a change means replacing the job."""
    return f"{spec.expression}|{spec.timing.timezone}"


def merge_schedules(*layers: Iterable[ScheduleSpec]) -> dict[str, ScheduleSpec]:
    """Schedules by name; a later layer overrides an earlier one with the same name (the
    database overrides code, which overrides the built-in maintenance jobs)."""
    merged: dict[str, ScheduleSpec] = {}
    for layer in layers:
        for spec in layer:
            merged[spec.name] = spec
    return merged


class Scheduler:
    """One scheduler replica. See the module docstring for the protocol.

    ``clock`` supplies "now" for slot decisions (tests pass a fake one and call ``fire_due``
    directly, no waiting); leases use the store's clock and this process's monotonic clock.
    ``grace_s``: how late a slot may be acted on and still count as on time (the SKIP
    policy's window; for an interval schedule, at most one period).
    """

    def __init__(
        self,
        store: ScheduleStore,
        *,
        code_schedules: ScheduleRegistry = schedules,
        builtin: Iterable[ScheduleSpec] = (),
        holder: str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        poll_s: float = 2.0,
        grace_s: float = DEFAULT_GRACE_S,
        max_attempts: int = 10,
        retry_delay_s: float = 5.0,
        stale_after_s: float = 60.0,
        clock: Clock = utc_now,
    ) -> None:
        if lease_s <= 0 or poll_s <= 0:
            raise ScheduleConfigError("lease_s and poll_s must be positive")
        if lease_s * 4 / 3 >= grace_s:
            logger.warning(
                "scheduler: a failover may take %.1fs (lease_s=%s + lease_s/3), longer than "
                "grace_s=%s: slots falling in it are skipped under misfire='skip' (logged). "
                "Lower lease_s or raise grace_s.",
                lease_s * 4 / 3,
                lease_s,
                grace_s,
            )
        self.store = store
        self.code_schedules = code_schedules
        self.builtin = list(builtin)
        self.holder = holder or default_holder_id()
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.max_attempts = max_attempts
        self.retry_delay_s = retry_delay_s
        self.stale_after_s = stale_after_s
        self.clock = clock
        self._specs: dict[str, ScheduleSpec] = {}
        self._token: Hashable = object()  # matches no real token: the first refresh loads
        self._lease_until = 0.0  # monotonic deadline of our lease, 0 = not leader
        self._next_renewal = 0.0
        self._aps: BackgroundScheduler | None = None
        self._lock = threading.Lock()
        self._skipped_upto: dict[str, datetime] = {}  # reported once per process

    # -- leadership -------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return time.monotonic() < self._lease_until

    def renew_lease(self) -> bool:
        """Acquire or renew the lease; returns whether this process leads. The local deadline
        counts from *before* the request, so it never outlives the lease in the store."""
        was_leader = self.is_leader
        started = time.monotonic()
        try:
            won = self.store.acquire_lease(self.holder, self.lease_s)
        except Exception:
            logger.exception("scheduler %s: cannot reach the schedule store to renew the lease", self.holder)
            won = False
            if families := metrics.families():
                families.lease_renew_failures.inc()
        if families := metrics.families():
            families.scheduler_leader.set(1 if won else 0)
        if won:
            if not was_leader:
                logger.info("scheduler %s: leader (lease %.1fs)", self.holder, self.lease_s)
            self._lease_until = started + self.lease_s
        else:
            if was_leader:
                logger.warning("scheduler %s: lost the leader lease; not firing", self.holder)
            # Also when the store is unreachable: stop firing at once rather than at expiry.
            self._lease_until = 0.0
        return won

    # -- schedules --------------------------------------------------------------------------

    def schedules(self) -> dict[str, ScheduleSpec]:
        """The effective schedules by name (built-in < code < database)."""
        return dict(self._specs)

    def refresh(self, *, force: bool = False) -> bool:
        """Reload stored schedules if the store's change token moved; returns True if it did."""
        token = self.store.changes_token()
        if token == self._token and not force:
            return False
        stored = self.store.load_schedules()
        self._token = token
        specs = merge_schedules(self.builtin, self.code_schedules, stored)
        for name, spec in list(specs.items()):
            if spec.local is None and registry.get(spec.function) is None:
                # A configuration error, not a failed run: log it per reload, fire nothing.
                logger.error(
                    "schedule %s: no function named %r is loaded; name its module on the "
                    "scheduler's command line. Not scheduled.",
                    name,
                    spec.function,
                )
                del specs[name]
        with self._lock:
            self._specs = specs
        self._sync_jobs()
        logger.info("scheduler %s: %d schedule(s) loaded", self.holder, len(self._specs))
        return True

    def _sync_jobs(self) -> None:
        aps = self._aps
        if aps is None:
            return
        wanted = {name: spec for name, spec in self._specs.items() if spec.enabled}
        for job in aps.get_jobs():
            spec = wanted.get(job.id)
            if spec is None or job.kwargs.get("signature") != _signature(spec):
                job.remove()
        present = {job.id for job in aps.get_jobs()}
        for name, spec in wanted.items():
            if name not in present:
                aps.add_job(
                    self._on_timer,
                    trigger=spec.timing.trigger,
                    id=name,
                    name=name,
                    kwargs={"name": name, "signature": _signature(spec)},
                    # Late or overlapping wake-ups are fine: fire() decides from run records.
                    misfire_grace_time=None,
                    coalesce=True,
                    max_instances=3,
                )

    # -- firing -----------------------------------------------------------------------------

    def _on_timer(self, name: str, signature: str) -> None:
        if self.is_leader:
            self.fire(name)

    def grace_for(self, spec: ScheduleSpec) -> float:
        if isinstance(spec.timing, IntervalSchedule):
            return min(self.grace_s, float(spec.timing.period_s))
        return self.grace_s

    def fire(self, name: str, now: datetime | None = None) -> list[datetime]:
        """Act on the slots of ``name`` due at ``now`` (default: the clock) under its misfire
        policy; returns the slots this process claimed. Does not check leadership (callers do)."""
        spec = self._specs.get(name)
        if spec is None or not spec.enabled:
            return []
        now = now or self.clock()
        try:
            last = self.store.last_fired(name)
            due = slots_to_fire(
                spec.slots,
                last,
                now,
                spec.misfire,
                catch_up_cap=spec.catch_up_cap,
                grace_s=self.grace_for(spec),
            )
        except Exception:
            logger.exception("schedule %s: cannot compute due slots", name)
            return []
        if last is not None:
            self._report_skipped(spec, max(last, self._skipped_upto.get(name, last)), now, due)
        claimed = []
        for slot in due:
            if self.store.claim_run(name, slot, self.holder):
                claimed.append(slot)
                self._dispatch(spec, slot)
        if len(due) > 1:
            logger.info("schedule %s: %d slot(s) due after downtime (%s)", name, len(due), spec.misfire)
        if claimed and (families := metrics.families()):
            # Fired later than the grace period: caught up (the skipped ones are counted above).
            grace_start = now - timedelta(seconds=self.grace_for(spec))
            if late := sum(1 for slot in claimed if slot < grace_start):
                families.misfires.labels(spec.name, "caught_up").inc(late)
        return claimed

    def _report_skipped(
        self, spec: ScheduleSpec, after: datetime, now: datetime, due: list[datetime]
    ) -> None:
        """Log and count (``SKIPPED_SLOTS`` and the misfires metric) the slots in (after, now]
        the misfire policy does not fire."""
        fired = set(due)
        candidates = itertools.islice(spec.slots.slots_between(after, now), _SKIP_SCAN_LIMIT)
        # Slots after the first due one are not missed: they are due, or not due yet.
        skipped = [slot for slot in candidates if slot not in fired and (not due or slot < due[0])]
        if not skipped:
            return
        self._skipped_upto[spec.name] = skipped[-1]
        reason = {
            Misfire.SKIP: f"more than grace_s={self.grace_for(spec):g}s late",
            Misfire.ONCE: "only the latest missed slot runs",
            Misfire.CATCH_UP: f"beyond catch_up_cap={spec.catch_up_cap}",
        }[spec.misfire]
        SKIPPED_SLOTS[(spec.name, spec.misfire.value)] += len(skipped)
        if families := metrics.families():
            families.misfires.labels(spec.name, "skipped").inc(len(skipped))
        logger.warning(
            "schedule %s: skipped %d slot(s) from %s to %s (misfire=%s: %s)",
            spec.name,
            len(skipped),
            skipped[0].isoformat(),
            skipped[-1].isoformat(),
            spec.misfire.value,
            reason,
        )

    def fire_due(self, now: datetime | None = None) -> dict[str, list[datetime]]:
        """``fire`` every enabled schedule: a new leader's catch-up, and each tick's safety net
        for a timer that did not wake (e.g. the process was paused)."""
        now = now or self.clock()
        return {name: slots for name in list(self._specs) if (slots := self.fire(name, now))}

    def _dispatch(self, spec: ScheduleSpec, slot: datetime) -> None:
        """Enqueue (or, for a maintenance job, run) one claimed slot and record the outcome."""
        message_id: str | None = None
        error: str | None = None
        try:
            if spec.local is not None:
                spec.local()
            else:
                function = registry.get(spec.function)
                if function is None:
                    raise ScheduleConfigError(
                        f"no function named {spec.function!r} is loaded; name its module on the "
                        f"scheduler's command line (pygigo scheduler myproject.functions)"
                    )
                message = function.send_with_options(
                    args=tuple(spec.args),
                    kwargs=dict(spec.kwargs),
                    pygigo_schedule=spec.name,
                    pygigo_slot=slot.astimezone(UTC).isoformat(),
                )
                message_id = message.message_id
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            logger.warning("schedule %s: slot %s failed: %s", spec.name, slot.isoformat(), error)
        else:
            if families := metrics.families():
                families.slots_fired.labels(spec.name).inc()
            lateness = (self.clock() - slot).total_seconds()
            logger.debug("schedule %s: slot %s fired %.3fs late", spec.name, slot.isoformat(), lateness)
        try:
            self.store.finish_run(
                spec.name, slot, message_id=message_id, error=error, max_attempts=self.max_attempts
            )
        except Exception:
            # The run stays "claimed" and is retried after stale_after_s: at least once.
            logger.exception("schedule %s: cannot record the outcome of slot %s", spec.name, slot)

    def retry_failed(self) -> int:
        """Enqueue again the runs whose enqueue failed (or whose process died mid-way)."""
        retried = 0
        for name, slot in self.store.claim_retries(
            self.holder, retry_delay_s=self.retry_delay_s, stale_after_s=self.stale_after_s
        ):
            spec = self._specs.get(name)
            if spec is None:
                self.store.finish_run(
                    name, slot, message_id=None, error="schedule no longer exists", max_attempts=1
                )
                continue
            self._dispatch(spec, slot)
            retried += 1
        return retried

    # -- the loop ---------------------------------------------------------------------------

    def tick(self) -> None:
        """One pass of the main loop: lease (when due), reload on change, leader's duties."""
        now = time.monotonic()
        became_leader = False
        if now >= self._next_renewal:
            was_leader = self.is_leader
            self._next_renewal = now + self.lease_s / 3
            became_leader = self.renew_lease() and not was_leader
        try:
            self.refresh()
        except Exception:
            logger.exception("scheduler %s: cannot reload schedules; keeping the current ones", self.holder)
        if not self.is_leader:
            return
        try:
            # On becoming leader this is the catch-up; afterwards a safety net for a timer that
            # did not wake (a paused process). Run records make the overlap harmless.
            fired = self.fire_due()
            if fired and became_leader:
                logger.info("scheduler %s: caught up %s", self.holder, sorted(fired))
            self.retry_failed()
        except Exception:
            logger.exception("scheduler %s: leader duties failed; retrying next tick", self.holder)

    def start(self) -> None:
        """Load schedules and start the APScheduler timer (does not block)."""
        self._aps = BackgroundScheduler(timezone=UTC, executors={"default": ThreadPoolExecutor(8)})
        self.refresh(force=True)
        self._aps.start()

    def run(self, stop: threading.Event) -> None:
        """Start, then loop until ``stop`` is set; releases the lease on the way out."""
        self.start()
        logger.info("scheduler %s: running (lease %.1fs, poll %.1fs)", self.holder, self.lease_s, self.poll_s)
        try:
            while not stop.is_set():
                self.tick()
                stop.wait(min(self.poll_s, self.lease_s / 3))
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=True)
        self._lease_until = 0.0
        try:
            self.store.release_lease(self.holder)
        except Exception:
            logger.warning("scheduler %s: could not release the lease (it will expire)", self.holder)
