"""Video jobs survive their gateway: `kill -9` of the gateway process while a clip is being
made, and a new gateway process on the same SQLite job store finishes the job.

What the code does (gateway/jobs/videos.py, video_runner.py): the killed gateway's lease on the
job is left in the store (`owner`, `lease_until`), the job stays `in_progress` with the
progress it had; once the lease runs out the new gateway's video runner claims it and makes
the clip again from the start (a clip is a function of the row: model, prompt, seconds, seed),
and the job completes. Nothing fails it.

The gateways are `aigc gateway --address` processes on the session stack's cluster (as in
test_batches_durable.py), their job store the test's, lease 2 s. The model is the stack's
`slow-video` (echo engine: one second of clip takes one second; flat 16x16 frames at 4 fps
whose colour walks from the seed's, `(seed's first 3 bytes + 8 k) mod 256` for frame k), so
the clip is certainly still being made when the gateway dies, and the MP4 made after the
restart can be checked frame by frame against the job's own seed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from load_tests.prom import scrape, total
from tests.conditions import wait_until
from tests.integration.test_batches_durable import Gateways, client, gateway_config
from tests.integration.test_batches_durable import gateways as gateways  # fixture

pytestmark = pytest.mark.integration
av = pytest.importorskip("av")

SECONDS, FPS, SIZE = 6, 4, 16
SEED = 0x081018  # the first frame's colour: (0x18, 0x10, 0x08); the last stays below 255


def row_in_db(url: str, video_id: str) -> dict[str, Any]:
    """The job's row, read from the database itself."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as db:
            row = db.execute(
                sa.text(
                    "SELECT status, progress, owner, lease_until, video_file_id FROM videos "
                    "WHERE id = :v"
                ),
                {"v": video_id},
            ).one()
    finally:
        engine.dispose()
    return dict(row._mapping)


def clips_made(metrics_url: str) -> float:
    return total(scrape(metrics_url), "aigc_video_clips_made_total")


def test_kill_9_mid_clip_and_restart_on_sqlite(
    stack: Any, gateways: Gateways, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    config = gateway_config(stack, tmp_path / "gateway.yaml", url)
    first = gateways.start(config)
    oai = client(first)
    video = oai.videos.create(
        model="slow-video", prompt="a clip", seconds=str(SECONDS),  # type: ignore[arg-type]
        extra_body={"seed": SEED},
    )  # fmt: skip
    # frames are being made: the replica has reported at least one second of the clip
    assert wait_until(lambda: oai.videos.retrieve(video.id).progress > 0, 60)
    gateways.kill(first)
    row = row_in_db(url, video.id)
    # mid-clip, still leased to the dead gateway, no file written
    assert row["status"] == "in_progress" and 0 < row["progress"] < 100, row
    assert row["owner"] is not None and row["video_file_id"] is None, row

    second = gateways.start(config)  # a new process on the same database
    oai = client(second)
    seen = oai.videos.retrieve(video.id)
    assert seen.status in ("in_progress", "completed") and seen.error is None, seen
    assert wait_until(
        lambda: oai.videos.retrieve(video.id).status in ("completed", "failed"), 120, step_s=0.2
    )
    done = oai.videos.retrieve(video.id)
    assert done.status == "completed" and done.progress == 100 and done.error is None, done
    assert done.expires_at and done.completed_at
    assert clips_made(second.metrics_url) == 1  # the new gateway made it
    row = row_in_db(url, video.id)
    assert row["owner"] is None and row["video_file_id"] is not None

    container = av.open(io.BytesIO(oai.videos.download_content(video.id).read()))
    stream = container.streams.video[0]
    frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    assert frames.shape == (SECONDS * FPS, SIZE, SIZE, 3) and stream.average_rate == FPS
    assert container.duration / 1e6 == pytest.approx(SECONDS, abs=0.01)
    # the clip of the job's own row, made whole from its start: frame k is the seed's colour
    # moved 8 k on, each frame once, in order (H.264 moves a flat colour by 3 at most here)
    start = np.frombuffer(SEED.to_bytes(8, "little")[:3], dtype=np.uint8).astype(int)
    expected = np.stack([(start + 8 * k) % 256 for k in range(SECONDS * FPS)])
    got = frames.reshape(len(frames), -1, 3).mean(axis=1)
    assert np.abs(got - expected).max() <= 5, np.abs(got - expected).max(axis=1)
    oai.videos.delete(video.id)
