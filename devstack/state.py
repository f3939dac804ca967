"""Keeping the local stack's data across restarts: S3 objects and DynamoDB items on disk.

moto keeps everything in memory. Snapshots are incremental (an object already saved with the same
ETag is not written again) and are taken periodically and at shutdown; on start, the data is
re-seeded before any trigger exists, so nothing is processed twice.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from urllib.parse import quote, unquote

import boto3


class StateDir:
    def __init__(self, root: Path, bucket: str, tables: list[str]):
        self.root, self.bucket, self.tables = root, bucket, tables
        self.objects = root / "s3" / bucket
        self.manifest_path = root / "s3" / f"{bucket}.manifest.json"
        self._lock = threading.Lock()

    def _manifest(self) -> dict[str, str]:
        return json.loads(self.manifest_path.read_text()) if self.manifest_path.is_file() else {}

    def save(self) -> dict[str, int]:
        """Write what changed since the last save. Returns counts."""
        with self._lock:
            s3 = boto3.client("s3")
            manifest = self._manifest()
            current: dict[str, str] = {}
            written = 0
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                for obj in page.get("Contents", []):
                    key, etag = obj["Key"], obj["ETag"]
                    current[key] = etag
                    if manifest.get(key) != etag:
                        target = self.objects / quote(key, safe="/")
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
                        written += 1
            for gone in set(manifest) - set(current):
                (self.objects / quote(gone, safe="/")).unlink(missing_ok=True)
            self.manifest_path.parent.mkdir(parents=True, exist_ok=True)
            self.manifest_path.write_text(json.dumps(current))
            items = 0
            ddb = boto3.client("dynamodb")
            for table in self.tables:
                rows = [item for page in ddb.get_paginator("scan").paginate(TableName=table) for item in page["Items"]]
                path = self.root / "dynamodb" / f"{table}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
                tmp.replace(path)  # never a half-written table file
                items += len(rows)
            return {"objects": len(current), "written": written, "items": items}

    def restore(self) -> dict[str, int]:
        s3 = boto3.client("s3")
        objects = 0
        if self.objects.is_dir():
            for path in sorted(p for p in self.objects.rglob("*") if p.is_file()):
                key = unquote(str(path.relative_to(self.objects)))
                s3.put_object(Bucket=self.bucket, Key=key, Body=path.read_bytes())
                objects += 1
        items = 0
        ddb = boto3.client("dynamodb")
        for table in self.tables:
            path = self.root / "dynamodb" / f"{table}.jsonl"
            if path.is_file():
                for line in path.read_text().splitlines():
                    if line.strip():
                        ddb.put_item(TableName=table, Item=json.loads(line))
                        items += 1
        # ETags after re-upload equal the saved ones (same bytes, no multipart), so the manifest stays valid
        return {"objects": objects, "items": items}
