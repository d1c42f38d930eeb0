"""The job store's state as Prometheus metrics, read from the database at scrape time (every
gateway on one PostgreSQL reports the same figures: alert rules take `max` over gateways).

    aigc_batches{status}                batches by OpenAI status
    aigc_batch_lines{state}             lines of unfinished batches: pending, done, error
    aigc_batch_oldest_waiting_seconds   age of the oldest batch still validating or in progress
    aigc_batch_lines_run_total          lines this gateway ran to a result (rate: progress)
    aigc_videos{status}                 video jobs by status
    aigc_video_clips_made_total         clips this gateway made
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.jobs.store import ACTIVE, DONE, JobStore, batches, lines

logger = logging.getLogger(__name__)


class JobMetrics(Collector):
    def __init__(self, store: JobStore, runner: Any = None) -> None:
        self.store = store
        self.runner = runner

    def collect(self) -> Iterator[Any]:
        try:
            by_status = self.store.count_batches()
            with self.store.engine.connect() as db:
                states: dict[str, int] = dict(
                    db.execute(
                        sa.select(lines.c.state, sa.func.count())
                        .select_from(lines.join(batches, lines.c.batch_id == batches.c.id))
                        .where(batches.c.status.in_(ACTIVE))
                        .group_by(lines.c.state)
                    ).all()
                )
            oldest = self.store.oldest_waiting_line()
        except Exception:  # the database is away: no figures rather than a failed scrape
            logger.exception("job store metrics unavailable")
            return
        family = GaugeMetricFamily("aigc_batches", "Batches by status.", labels=["status"])
        for status in (*ACTIVE, *DONE):
            family.add_metric([status], float(by_status.get(status, 0)))
        yield family
        family = GaugeMetricFamily(
            "aigc_batch_lines", "Lines of unfinished batches by state.", labels=["state"]
        )
        for state in ("pending", "done", "error"):
            family.add_metric([state], float(states.get(state, 0)))
        yield family
        yield GaugeMetricFamily(
            "aigc_batch_oldest_waiting_seconds",
            "Age of the oldest batch still validating or in progress (0: none).",
            value=0.0 if oldest is None else max(0.0, time.time() - oldest),
        )
        if self.runner is not None:
            yield CounterMetricFamily(
                "aigc_batch_lines_run",
                "Batch lines this gateway ran to a result.",
                value=float(self.runner.lines_run),
            )


class VideoMetrics(Collector):
    """aigc_videos{status} (video jobs by status, from the store) and
    aigc_video_clips_made_total (clips this gateway made)."""

    STATUSES = ("queued", "in_progress", "completed", "failed")

    def __init__(self, store: Any, runner: Any = None) -> None:
        self.store = store  # gateway.jobs.videos.VideoStore
        self.runner = runner

    def collect(self) -> Iterator[Any]:
        try:
            by_status = self.store.count()
        except Exception:
            logger.exception("video job metrics unavailable")
            return
        family = GaugeMetricFamily("aigc_videos", "Video jobs by status.", labels=["status"])
        for status in self.STATUSES:
            family.add_metric([status], float(by_status.get(status, 0)))
        yield family
        if self.runner is not None:
            yield CounterMetricFamily(
                "aigc_video_clips_made",
                "Clips this gateway made.",
                value=float(self.runner.clips_made),
            )
