"""The local stack's data on disk, written through: every acknowledged write is on disk first.

moto keeps everything in memory. The AWS front (devstack.front) calls `object_written` /
`item_written` after moto has applied a write to the study bucket or a persisted table and before
the client gets its answer; each reads the object or item back and stores it in a file of its own,
written to a temporary name, fsynced and renamed, so a crash (SIGKILL included) loses nothing that
was acknowledged and never leaves a half-written file. At the next start `restore` puts everything
back into moto before any trigger exists, so nothing is processed twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("devstack.state")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def remove_durably(path: Path) -> None:
    if path.exists():
        path.unlink()
        _fsync_dir(path.parent)


def _name(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class DurableState:
    """One file per S3 object (a JSON header line, then the bytes) and per DynamoDB item."""

    def __init__(self, root: Path, bucket: str, tables: dict[str, tuple[str, ...]]):
        self.root, self.bucket, self.tables = Path(root), bucket, tables  # table -> key attribute names
        self.objects = self.root / "state" / "s3" / bucket
        self.items = self.root / "state" / "dynamodb"
        # Writes to one object or item are read back and stored in the order they happened.
        self._locks = [threading.Lock() for _ in range(64)]
        self.s3 = self.ddb = None  # boto3 clients, set by `connect` (the front must be up)

    def connect(self, s3, ddb) -> None:
        self.s3, self.ddb = s3, ddb

    def lock(self, *parts: str) -> threading.Lock:
        return self._locks[int(_name(*parts)[:8], 16) % len(self._locks)]

    # -- S3 -------------------------------------------------------------------------------------
    def object_written(self, key: str) -> None:
        """Store the object as moto now holds it (or forget it, if it is gone)."""
        path = self.objects / _name(key)
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=key)
        except self.s3.exceptions.NoSuchKey:
            remove_durably(path)
            return
        header = {"key": key, "content_type": obj.get("ContentType"), "metadata": obj.get("Metadata") or {}}
        write_atomically(path, json.dumps(header).encode() + b"\n" + obj["Body"].read())

    # -- DynamoDB ---------------------------------------------------------------------------------
    def key_of(self, table: str, item: dict) -> dict:
        return {name: item[name] for name in self.tables[table]}

    def item_written(self, table: str, key: dict) -> None:
        path = self.items / table / f"{_name(json.dumps(key, sort_keys=True))}.json"
        item = self.ddb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        if item is None:
            remove_durably(path)
        else:
            write_atomically(path, json.dumps(item).encode())

    # -- start ------------------------------------------------------------------------------------
    def restore(self) -> dict[str, int]:
        """Everything back into moto (the front does not write it again meanwhile)."""
        self.migrate_snapshot()
        objects = items = 0
        for path in sorted(self.objects.glob("*")) if self.objects.is_dir() else []:
            if path.name.startswith("."):  # a write that never finished: it was never acknowledged
                path.unlink()
                continue
            header, _, body = path.read_bytes().partition(b"\n")
            meta = json.loads(header)
            extra: dict[str, Any] = {"ContentType": meta["content_type"]} if meta.get("content_type") else {}
            self.s3.put_object(Bucket=self.bucket, Key=meta["key"], Body=body, Metadata=meta["metadata"], **extra)
            objects += 1
        for table in self.tables:
            for path in sorted((self.items / table).glob("*.json")) if (self.items / table).is_dir() else []:
                self.ddb.put_item(TableName=table, Item=json.loads(path.read_bytes()))
                items += 1
            for path in (self.items / table).glob(".*.tmp") if (self.items / table).is_dir() else []:
                path.unlink()
        return {"objects": objects, "items": items}

    def migrate_snapshot(self) -> None:
        """State folders from before write-through held periodic snapshots: convert them once."""
        old_objects, old_tables = self.root / "s3" / self.bucket, self.root / "dynamodb"
        if not old_objects.is_dir() and not old_tables.is_dir():
            return
        from urllib.parse import unquote

        for path in sorted(p for p in old_objects.rglob("*") if p.is_file()) if old_objects.is_dir() else []:
            key = unquote(str(path.relative_to(old_objects)))
            header = {"key": key, "content_type": None, "metadata": {}}
            write_atomically(self.objects / _name(key), json.dumps(header).encode() + b"\n" + path.read_bytes())
        for table in self.tables:
            old = old_tables / f"{table}.jsonl"
            for line in old.read_text().splitlines() if old.is_file() else []:
                if line.strip():
                    item = json.loads(line)
                    key = self.key_of(table, item)
                    write_atomically(self.items / table / f"{_name(json.dumps(key, sort_keys=True))}.json",
                                     json.dumps(item).encode())
        done = self.root / "snapshot-before-write-through"
        done.mkdir(exist_ok=True)
        for old in (self.root / "s3", old_tables):
            if old.exists():
                old.rename(done / old.name)
        log.info("converted the snapshot in %s to write-through state (the old files are in %s)", self.root, done)
