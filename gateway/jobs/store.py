"""The job store: files, batches (the OpenAI Batch API) and videos (gateway/jobs/videos.py),
durable in a real database.

SQLite (embedded, the default: `make up` needs no set-up) or PostgreSQL (several gateways, one
database), through SQLAlchemy Core; the schema is Alembic's (gateway/jobs/migrations), brought
to the newest revision when a gateway opens the store. Methods are synchronous, each one
transaction; the gateway calls them from a worker thread (`asyncio.to_thread`).

Exactly one output or error line per input line, whatever dies when: a batch's lines are
stored at validation, each with its state; a line's result is written in the transaction that
moves it from `pending` to `done` or `error` (and counts it), so a line whose result was written
is never run again, and one that was running when its gateway died runs again (its result was
not written). A batch is worked by one gateway at a time: the one holding its lease
(`owner`, `lease_until`), which it renews while it works; a lease not renewed expires, and
another gateway claims the batch.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

files = sa.Table(
    "files",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("filename", sa.String(512), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    sa.Column("body", sa.LargeBinary, nullable=True),  # None: the body is in files_dir
)

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("endpoint", sa.String(64), nullable=False),
    sa.Column("input_file_id", sa.String(64), nullable=False),
    sa.Column("completion_window", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("metadata", sa.Text, nullable=True),  # JSON
    sa.Column("errors", sa.Text, nullable=True),  # JSON: OpenAI's {"object": "list", "data"}
    sa.Column("output_file_id", sa.String(64), nullable=True),
    sa.Column("error_file_id", sa.String(64), nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    *(
        sa.Column(f"{stamp}_at", sa.BigInteger, nullable=True)
        for stamp in (
            "in_progress",
            "finalizing",
            "completed",
            "failed",
            "expired",
            "cancelling",
            "cancelled",
        )
    ),
    sa.Column("total", sa.Integer, nullable=False, default=0),
    sa.Column("completed", sa.Integer, nullable=False, default=0),
    sa.Column("failed", sa.Integer, nullable=False, default=0),
    sa.Column("owner", sa.String(128), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
)

lines = sa.Table(
    "batch_lines",
    metadata,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("line_no", sa.Integer, primary_key=True),
    sa.Column("custom_id", sa.String(512), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the request line as sent (JSON)
    sa.Column("state", sa.String(8), nullable=False),  # pending | done | error
    sa.Column("result", sa.Text, nullable=True),  # the output or error line (JSON)
    sa.Index("batch_lines_state", "batch_id", "state"),
)

videos = sa.Table(  # video jobs (gateway/jobs/videos.py); revision 0002
    "videos",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("seconds", sa.Integer, nullable=False),
    sa.Column("size", sa.String(32), nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # queued | in_progress | ...
    sa.Column("progress", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text, nullable=True),  # JSON: {"code", "message", "param"}
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("completed_at", sa.BigInteger, nullable=True),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    sa.Column("remixed_from", sa.String(64), nullable=True),
    sa.Column("narration", sa.Text, nullable=True),  # spoken as the clip's audio track
    sa.Column("voice", sa.String(64), nullable=True),
    # the clip's three files (the files table, purpose "video")
    sa.Column("video_file_id", sa.String(64), nullable=True),
    sa.Column("thumbnail_file_id", sa.String(64), nullable=True),
    sa.Column("spritesheet_file_id", sa.String(64), nullable=True),
    sa.Column("owner", sa.String(128), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
)

# OpenAI's batch states; the ones a gateway still has work to do in.
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
DONE = ("completed", "failed", "expired", "cancelled")
# The purpose of an input file made from the request lines a batch was created with (aigc.v1
# CreateBatch), which goes when its batch is deleted; uploads are purpose "batch".
INLINE_PURPOSE = "batch_inline"


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def now() -> int:
    return int(time.time())


@dataclass
class FileRecord:
    id: str
    purpose: str
    filename: str
    bytes: int
    created_at: int
    expires_at: int | None = None

    def openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


@dataclass
class BatchRecord:
    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    created_at: int
    expires_at: int
    metadata: dict[str, str] | None = None
    errors: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    stamps: dict[str, int | None] = field(default_factory=dict)
    total: int = 0
    completed: int = 0
    failed: int = 0
    owner: str | None = None
    lease_until: float | None = None

    def openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": None if self.errors is None else {"object": "list", "data": self.errors},
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            **{f"{k}_at": v for k, v in self.stamps.items()},
            "request_counts": {
                "total": self.total,
                "completed": self.completed,
                "failed": self.failed,
            },
            "metadata": self.metadata,
        }


STAMPS = ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")


def _batch(row: Any) -> BatchRecord:
    m = row._mapping
    return BatchRecord(
        id=m["id"],
        endpoint=m["endpoint"],
        input_file_id=m["input_file_id"],
        completion_window=m["completion_window"],
        status=m["status"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        metadata=json.loads(m["metadata"]) if m["metadata"] else None,
        errors=json.loads(m["errors"]) if m["errors"] else None,
        output_file_id=m["output_file_id"],
        error_file_id=m["error_file_id"],
        stamps={s: m[f"{s}_at"] for s in STAMPS},
        total=m["total"],
        completed=m["completed"],
        failed=m["failed"],
        owner=m["owner"],
        lease_until=m["lease_until"],
    )


def _file(row: Any) -> FileRecord:
    m = row._mapping
    return FileRecord(
        m["id"], m["purpose"], m["filename"], m["bytes"], m["created_at"], m["expires_at"]
    )


@dataclass
class Line:
    line_no: int
    custom_id: str
    body: dict[str, Any]


def with_driver(url: str) -> str:
    """`postgresql://` and `postgres://` URLs (what managed databases and operators hand out)
    on the psycopg 3 driver this project installs; any other URL as it is."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


class JobStore:
    """Files and batches in one database (`url`: SQLAlchemy's, `sqlite:///path` or
    `postgresql+psycopg://...`; a plain `postgresql://` URL gets psycopg). File bodies go in
    the database, or in `files_dir` when set (a directory, or a volume several gateways
    share)."""

    def __init__(self, url: str, files_dir: str | Path | None = None) -> None:
        self.url = url = with_driver(url)
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            # one connection per thread; WAL so readers never wait for the writer
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine = sa.create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.files_dir = Path(files_dir) if files_dir else None
        if self.files_dir is not None:
            self.files_dir.mkdir(parents=True, exist_ok=True)

    def migrate(self) -> None:
        """Brings the schema to the newest revision (Alembic; safe to run from every gateway)."""
        from gateway.jobs.migrations import upgrade

        upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ---- files ---------------------------------------------------------------------------
    def create_file(self, purpose: str, filename: str, data: bytes) -> FileRecord:
        record = FileRecord(new_id("file-"), purpose, filename, len(data), now())
        body: bytes | None = data
        if self.files_dir is not None:
            (self.files_dir / record.id).write_bytes(data)
            body = None
        with self.engine.begin() as db:
            db.execute(
                files.insert().values(
                    id=record.id, purpose=purpose, filename=filename, bytes=record.bytes,
                    created_at=record.created_at, expires_at=None, body=body,
                )
            )  # fmt: skip
        return record

    def get_file(self, file_id: str) -> FileRecord | None:
        with self.engine.connect() as db:
            row = db.execute(
                sa.select(*[c for c in files.c if c.name != "body"]).where(files.c.id == file_id)
            ).first()
        return _file(row) if row is not None else None

    def file_content(self, file_id: str) -> bytes | None:
        with self.engine.connect() as db:
            row = db.execute(sa.select(files.c.body).where(files.c.id == file_id)).first()
        if row is None:
            return None
        if row[0] is not None:
            return bytes(row[0])
        assert self.files_dir is not None, "a file body outside the database needs files_dir"
        return (self.files_dir / file_id).read_bytes()

    def list_files(
        self, purpose: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[FileRecord]:
        query = sa.select(*[c for c in files.c if c.name != "body"])
        if purpose:
            query = query.where(files.c.purpose == purpose)
        query = _after(query, files, after).order_by(files.c.created_at.desc(), files.c.id.desc())
        with self.engine.connect() as db:
            return [_file(r) for r in db.execute(query.limit(limit))]

    def delete_file(self, file_id: str) -> bool:
        with self.engine.begin() as db:
            gone = db.execute(files.delete().where(files.c.id == file_id)).rowcount
        if gone and self.files_dir is not None:
            (self.files_dir / file_id).unlink(missing_ok=True)
        return bool(gone)

    # ---- batches -------------------------------------------------------------------------
    def create_batch(
        self,
        endpoint: str,
        input_file_id: str,
        completion_window: str,
        window_s: int,
        meta: dict[str, str] | None,
    ) -> BatchRecord:
        created = now()
        values = {
            "id": new_id("batch_"),
            "endpoint": endpoint,
            "input_file_id": input_file_id,
            "completion_window": completion_window,
            "status": "validating",
            "metadata": json.dumps(meta) if meta else None,
            "created_at": created,
            "expires_at": created + window_s,
            "total": 0,
            "completed": 0,
            "failed": 0,
        }
        with self.engine.begin() as db:
            db.execute(batches.insert().values(**values))
        record = self.get_batch(str(values["id"]))
        assert record is not None
        return record

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        with self.engine.connect() as db:
            row = db.execute(sa.select(batches).where(batches.c.id == batch_id)).first()
        return _batch(row) if row is not None else None

    def list_batches(
        self, after: str | None = None, limit: int = 20, statuses: Sequence[str] | None = None
    ) -> list[BatchRecord]:
        """Newest first, after the batch `after`; only those in `statuses` when given."""
        query = _after(sa.select(batches), batches, after)
        if statuses is not None:
            query = query.where(batches.c.status.in_(statuses))
        query = query.order_by(batches.c.created_at.desc(), batches.c.id.desc()).limit(limit)
        with self.engine.connect() as db:
            return [_batch(r) for r in db.execute(query)]

    def count_batches(self) -> dict[str, int]:
        """Batches by status (for the metrics)."""
        query = sa.select(batches.c.status, sa.func.count()).group_by(batches.c.status)
        with self.engine.connect() as db:
            return {status: int(n) for status, n in db.execute(query)}

    def oldest_waiting_line(self) -> int | None:
        """When the oldest batch that still has pending lines was created (for the metrics)."""
        query = (
            sa.select(sa.func.min(batches.c.created_at))
            .where(batches.c.status.in_(("validating", "in_progress")))
        )  # fmt: skip
        with self.engine.connect() as db:
            value = db.execute(query).scalar()
        return int(value) if value is not None else None

    def request_cancel(self, batch_id: str) -> BatchRecord | None:
        """Moves an unfinished batch to `cancelling` (its gateway then stops it); a finished
        one is returned as it is (the caller refuses)."""
        with self.engine.begin() as db:
            running = batches.c.status.in_(("validating", "in_progress"))
            db.execute(
                batches.update()
                .where(batches.c.id == batch_id, running)
                .values(status="cancelling", cancelling_at=now())
            )
        return self.get_batch(batch_id)

    def delete_batch(self, batch_id: str) -> BatchRecord | None:
        """Removes a finished batch, its lines and the files it made: its output and error
        files, and its input file when that was made from lines given with the batch (purpose
        `INLINE_PURPOSE`) and no other batch reads it. An unfinished batch is returned as it
        is, not removed (the caller refuses); None: no such batch."""
        record = self.get_batch(batch_id)
        if record is None or record.status not in DONE:
            return record
        with self.engine.begin() as db:
            gone = db.execute(
                batches.delete().where(batches.c.id == batch_id, batches.c.status.in_(DONE))
            ).rowcount
            if not gone:  # removed meanwhile by another caller
                return None
            db.execute(lines.delete().where(lines.c.batch_id == batch_id))
            made = [f for f in (record.output_file_id, record.error_file_id) if f]
            source = db.execute(
                sa.select(files.c.purpose).where(files.c.id == record.input_file_id)
            ).scalar()
            shared = db.execute(
                sa.select(batches.c.id).where(batches.c.input_file_id == record.input_file_id)
            ).first()
            if source == INLINE_PURPOSE and shared is None:
                made.append(record.input_file_id)
        for file_id in made:
            self.delete_file(file_id)
        return record

    # ---- the worker's side ---------------------------------------------------------------
    def claim(self, owner: str, lease_s: float) -> BatchRecord | None:
        """An unfinished batch no live gateway holds, now leased to `owner` (oldest first)."""
        t = time.time()
        free = sa.or_(
            batches.c.owner.is_(None), batches.c.lease_until < t, batches.c.owner == owner
        )
        query = (
            sa.select(batches.c.id)
            .where(batches.c.status.in_(ACTIVE), free)
            .order_by(batches.c.created_at)
            .limit(8)
        )
        with self.engine.begin() as db:
            candidates = [r[0] for r in db.execute(query)]
            for batch_id in candidates:  # compare-and-set: one gateway wins each batch
                won = db.execute(
                    batches.update()
                    .where(batches.c.id == batch_id, batches.c.status.in_(ACTIVE), free)
                    .values(owner=owner, lease_until=t + lease_s)
                ).rowcount
                if won:
                    row = db.execute(sa.select(batches).where(batches.c.id == batch_id)).first()
                    return _batch(row)
        return None

    def renew(self, batch_id: str, owner: str, lease_s: float) -> bool:
        """Extends `owner`'s lease; False when it no longer holds the batch."""
        with self.engine.begin() as db:
            return bool(
                db.execute(
                    batches.update()
                    .where(batches.c.id == batch_id, batches.c.owner == owner)
                    .values(lease_until=time.time() + lease_s)
                ).rowcount
            )

    def release(self, batch_id: str, owner: str) -> None:
        with self.engine.begin() as db:
            db.execute(
                batches.update()
                .where(batches.c.id == batch_id, batches.c.owner == owner)
                .values(owner=None, lease_until=None)
            )

    def start(self, batch_id: str, owner: str, parsed: list[Line], errors: list[str]) -> bool:
        """Validation done: the batch's lines are stored and it is in progress; `errors`:
        lines that could not be read at all (each an error line now). False: lost the lease
        or the batch was cancelled meanwhile."""
        rows = [
            {
                "batch_id": batch_id,
                "line_no": line.line_no,
                "custom_id": line.custom_id,
                "body": json.dumps(line.body),
                "state": "pending",
                "result": None,
            }
            for line in parsed
        ]
        with self.engine.begin() as db:
            moved = db.execute(
                batches.update()
                .where(
                    batches.c.id == batch_id,
                    batches.c.owner == owner,
                    batches.c.status == "validating",
                )
                .values(
                    status="in_progress",
                    in_progress_at=now(),
                    total=len(rows) + len(errors),
                    failed=len(errors),
                )
            ).rowcount
            if not moved:
                return False
            if rows:
                db.execute(lines.insert(), rows)
            for k, error in enumerate(errors):  # unreadable lines: numbered after the others
                db.execute(
                    lines.insert().values(
                        batch_id=batch_id, line_no=len(rows) + k, custom_id="",
                        body="null", state="error", result=error,
                    )
                )  # fmt: skip
        return True

    def pending(self, batch_id: str, limit: int, exclude: set[int] | None = None) -> list[Line]:
        query = (
            sa.select(lines.c.line_no, lines.c.custom_id, lines.c.body)
            .where(lines.c.batch_id == batch_id, lines.c.state == "pending")
            .order_by(lines.c.line_no)
        )
        if exclude:
            query = query.where(lines.c.line_no.not_in(exclude))
        with self.engine.connect() as db:
            return [Line(n, c, json.loads(b)) for n, c, b in db.execute(query.limit(limit))]

    def finish_line(self, batch_id: str, line_no: int, ok: bool, result: dict[str, Any]) -> bool:
        """Writes a line's one result and counts it, unless it has one already."""
        state = "done" if ok else "error"
        with self.engine.begin() as db:
            written = db.execute(
                lines.update()
                .where(
                    lines.c.batch_id == batch_id,
                    lines.c.line_no == line_no,
                    lines.c.state == "pending",
                )
                .values(state=state, result=json.dumps(result))
            ).rowcount
            if written:
                counter = batches.c.completed if ok else batches.c.failed
                db.execute(
                    batches.update()
                    .where(batches.c.id == batch_id)
                    .values({counter.name: counter + 1})
                )
        return bool(written)

    def fail_pending(self, batch_id: str, result: Any) -> int:
        """Every line still pending gets an error line (`result(custom_id)`): a batch that
        expired or was cancelled. Returns how many."""
        query = sa.select(lines.c.line_no, lines.c.custom_id).where(
            lines.c.batch_id == batch_id, lines.c.state == "pending"
        )
        with self.engine.connect() as db:
            waiting = list(db.execute(query))
        n = 0
        for line_no, custom_id in waiting:
            n += self.finish_line(batch_id, line_no, False, result(custom_id))
        return n

    def results(self, batch_id: str) -> Iterator[tuple[int, str, str]]:
        """(line_no, state, result) of every line that has one, in input order."""
        query = (
            sa.select(lines.c.line_no, lines.c.state, lines.c.result)
            .where(lines.c.batch_id == batch_id, lines.c.result.is_not(None))
            .order_by(lines.c.line_no)
        )
        with self.engine.connect() as db:
            yield from ((n, s, r) for n, s, r in db.execute(query))

    def counts(self, batch_id: str) -> dict[str, int]:
        query = (
            sa.select(lines.c.state, sa.func.count())
            .where(lines.c.batch_id == batch_id)
            .group_by(lines.c.state)
        )
        with self.engine.connect() as db:
            return {state: int(n) for state, n in db.execute(query)}

    def move(self, batch_id: str, owner: str | None, status: str, **values: Any) -> bool:
        """Moves the batch `owner` holds to `status`, stamping `<status>_at` (None: any
        holder)."""
        values.setdefault(f"{status}_at", now()) if status in STAMPS else None
        where = [batches.c.id == batch_id]
        if owner is not None:
            where.append(batches.c.owner == owner)
        if status in DONE:
            values.update(owner=None, lease_until=None)
        with self.engine.begin() as db:
            return bool(
                db.execute(batches.update().where(*where).values(status=status, **values)).rowcount
            )


def _after(query: Any, table: sa.Table, after: str | None) -> Any:
    """Rows listed after the row `after` (newest first: created earlier, or the same second
    and a smaller id)."""
    if not after:
        return query
    anchor = (
        sa.select(table.c.created_at).where(table.c.id == after).scalar_subquery()
    )  # fmt: skip
    return query.where(
        sa.or_(
            table.c.created_at < anchor,
            sa.and_(table.c.created_at == anchor, table.c.id < after),
        )
    )


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
