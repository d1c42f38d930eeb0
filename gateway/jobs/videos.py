"""Video jobs on the job store: one row per clip (`videos`), its three outputs (MP4,
thumbnail, spritesheet) as files of purpose `video` (in the database or `files_dir`).

A job is `queued` until a gateway's video runner (gateway/jobs/video_runner.py) claims it with
a lease, `in_progress` (with `progress` 0-100) while its clip is made, then `completed` (the
files written and the job moved in one step, so a completed job always has its files) or
`failed` (with `error`). A lease not renewed expires and another runner, or this gateway
after a restart, claims the job again and makes the clip from the start (the clip is a
function of the row: model, prompt, seconds, seed). Deleting a job removes the row and its
files; a runner working on it loses its lease at the next renewal and stops.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.jobs.store import JobStore, new_id, now
from gateway.jobs.store import videos as table

ACTIVE = ("queued", "in_progress")
VARIANTS = ("video", "thumbnail", "spritesheet")
MEDIA = {"video": "video/mp4", "thumbnail": "image/png", "spritesheet": "image/png"}


@dataclass
class VideoRecord:
    id: str
    model: str
    prompt: str
    seconds: int
    size: str
    seed: int
    status: str
    progress: int
    created_at: int
    error: dict[str, Any] | None = None
    completed_at: int | None = None
    expires_at: int | None = None
    remixed_from: str | None = None
    narration: str | None = None
    voice: str | None = None
    files: dict[str, str | None] | None = None  # variant -> file id
    owner: str | None = None

    def openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "video",
            "model": self.model,
            "status": self.status,
            "progress": self.progress,
            "prompt": self.prompt,
            "seconds": str(self.seconds),
            "size": self.size,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
            "expires_at": self.expires_at,
            "error": self.error,
            "remixed_from_video_id": self.remixed_from,
            "narration": self.narration,  # our extension
        }


def _record(row: Any) -> VideoRecord:
    m = row._mapping
    return VideoRecord(
        id=m["id"],
        model=m["model"],
        prompt=m["prompt"],
        seconds=m["seconds"],
        size=m["size"],
        seed=m["seed"],
        status=m["status"],
        progress=m["progress"],
        created_at=m["created_at"],
        error=json.loads(m["error"]) if m["error"] else None,
        completed_at=m["completed_at"],
        expires_at=m["expires_at"],
        remixed_from=m["remixed_from"],
        narration=m["narration"],
        voice=m["voice"],
        files={v: m[f"{v}_file_id"] for v in VARIANTS},
        owner=m["owner"],
    )


class VideoStore:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.engine = store.engine

    def create(
        self, model: str, prompt: str, seconds: int, size: str, seed: int,
        remixed_from: str | None = None, narration: str | None = None, voice: str | None = None,
    ) -> VideoRecord:  # fmt: skip
        values = {
            "id": new_id("video_"), "model": model, "prompt": prompt, "seconds": seconds,
            "size": size, "seed": seed, "status": "queued", "progress": 0,
            "created_at": now(), "remixed_from": remixed_from, "narration": narration,
            "voice": voice,
        }  # fmt: skip
        with self.engine.begin() as db:
            db.execute(table.insert().values(**values))
        record = self.get(str(values["id"]))
        assert record is not None
        return record

    def get(self, video_id: str) -> VideoRecord | None:
        with self.engine.connect() as db:
            row = db.execute(sa.select(table).where(table.c.id == video_id)).first()
        return _record(row) if row is not None else None

    def page(
        self, after: str | None = None, limit: int = 20, order: str = "desc"
    ) -> list[VideoRecord]:
        query = sa.select(table)
        if after:
            anchor = sa.select(table.c.created_at).where(table.c.id == after).scalar_subquery()
            if order == "asc":
                query = query.where(
                    sa.or_(
                        table.c.created_at > anchor,
                        sa.and_(table.c.created_at == anchor, table.c.id > after),
                    )
                )
            else:
                query = query.where(
                    sa.or_(
                        table.c.created_at < anchor,
                        sa.and_(table.c.created_at == anchor, table.c.id < after),
                    )
                )
        keys = (table.c.created_at, table.c.id)
        query = query.order_by(*(k.asc() if order == "asc" else k.desc() for k in keys))
        with self.engine.connect() as db:
            return [_record(r) for r in db.execute(query.limit(limit))]

    def delete(self, video_id: str) -> VideoRecord | None:
        """Removes the job and its files (a runner working on it stops at its next renewal)."""
        record = self.get(video_id)
        if record is None:
            return None
        with self.engine.begin() as db:
            gone = db.execute(table.delete().where(table.c.id == video_id)).rowcount
        if not gone:
            return None
        for file_id in (record.files or {}).values():
            if file_id:
                self.store.delete_file(file_id)
        return record

    def content(self, record: VideoRecord, variant: str) -> bytes | None:
        file_id = (record.files or {}).get(variant)
        return self.store.file_content(file_id) if file_id else None

    def count(self) -> dict[str, int]:
        query = sa.select(table.c.status, sa.func.count()).group_by(table.c.status)
        with self.engine.connect() as db:
            return {status: int(n) for status, n in db.execute(query)}

    # ---- the runner's side ---------------------------------------------------------------
    def claim(self, owner: str, lease_s: float, exclude: set[str]) -> VideoRecord | None:
        """An unfinished job no live gateway holds, now leased to `owner` (oldest first)."""
        t = time.time()
        free = sa.or_(table.c.owner.is_(None), table.c.lease_until < t)
        query = (
            sa.select(table.c.id)
            .where(table.c.status.in_(ACTIVE), free)
            .order_by(table.c.created_at)
            .limit(8)
        )
        if exclude:
            query = query.where(table.c.id.not_in(exclude))
        with self.engine.begin() as db:
            for (video_id,) in list(db.execute(query)):  # compare-and-set: one gateway wins
                won = db.execute(
                    table.update()
                    .where(table.c.id == video_id, table.c.status.in_(ACTIVE), free)
                    .values(owner=owner, lease_until=t + lease_s)
                ).rowcount
                if won:
                    return _record(db.execute(sa.select(table).where(table.c.id == video_id)).one())
        return None

    def _held(self, video_id: str, owner: str) -> Any:
        return sa.and_(table.c.id == video_id, table.c.owner == owner)

    def renew(self, video_id: str, owner: str, lease_s: float) -> bool:
        """False when `owner` no longer holds the job (deleted, or taken over)."""
        with self.engine.begin() as db:
            return bool(
                db.execute(
                    table.update()
                    .where(self._held(video_id, owner))
                    .values(lease_until=time.time() + lease_s)
                ).rowcount
            )

    def release(self, video_id: str, owner: str) -> None:
        """Gives an unfinished job back (a gateway stopping): another claims it at once."""
        with self.engine.begin() as db:
            db.execute(
                table.update()
                .where(self._held(video_id, owner))
                .values(owner=None, lease_until=None)
            )

    def progress(self, video_id: str, owner: str, progress: int) -> bool:
        with self.engine.begin() as db:
            return bool(
                db.execute(
                    table.update()
                    .where(self._held(video_id, owner), table.c.status.in_(ACTIVE))
                    .values(status="in_progress", progress=max(0, min(99, progress)))
                ).rowcount
            )

    def complete(self, video_id: str, owner: str, outputs: dict[str, bytes], ttl_s: int) -> bool:
        """Writes the clip's files and moves the job to completed; False (files removed) when
        the job was deleted or taken over meanwhile."""
        ids = {
            v: self.store.create_file("video", f"{video_id}.{_EXT[v]}", data).id
            for v, data in outputs.items()
        }
        done = now()
        with self.engine.begin() as db:
            moved = db.execute(
                table.update()
                .where(self._held(video_id, owner), table.c.status.in_(ACTIVE))
                .values(
                    status="completed", progress=100, completed_at=done, expires_at=done + ttl_s,
                    owner=None, lease_until=None, **{f"{v}_file_id": i for v, i in ids.items()},
                )
            ).rowcount  # fmt: skip
        if not moved:
            for file_id in ids.values():
                self.store.delete_file(file_id)
        return bool(moved)

    def fail(self, video_id: str, owner: str, code: str, message: str, param: str | None) -> bool:
        error = json.dumps({"code": code, "message": message, "param": param})
        with self.engine.begin() as db:
            return bool(
                db.execute(
                    table.update()
                    .where(self._held(video_id, owner), table.c.status.in_(ACTIVE))
                    .values(
                        status="failed", error=error, completed_at=now(), owner=None,
                        lease_until=None,
                    )
                ).rowcount
            )  # fmt: skip

    def expired(self, limit: int = 100) -> list[str]:
        """Completed jobs whose files are past `expires_at`."""
        query = (
            sa.select(table.c.id)
            .where(table.c.status == "completed", table.c.expires_at < now())
            .limit(limit)
        )
        with self.engine.connect() as db:
            return [r[0] for r in db.execute(query)]


_EXT = {"video": "mp4", "thumbnail": "png", "spritesheet": "png"}
