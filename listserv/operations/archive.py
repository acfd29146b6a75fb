"""The backup archive's layout and manifest: what a backup holds and how it is checked.

A backup is one `.tar.gz` of regular files: `manifest.json` first, then `database/…` (the
SQLite copy or the `pg_dump` file) and `files/…` (the data folder's files, by their path in
it). The manifest names every other member with its size and sha256.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final

from listserv.errors import ListservError

MANIFEST: Final = "manifest.json"
FORMAT: Final = 1
SQLITE_MEMBER: Final = "database/listserv.db"
PG_MEMBER: Final = "database/listserv.pgdump"
FILES: Final = "files/"


@dataclass
class Manifest:
    """What a backup says about itself (`manifest.json`)."""

    version: str
    schema_revision: str | None
    backend: str
    counts: dict[str, int]
    created: str
    extra: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """The manifest as `manifest.json` holds it."""
        data = {"format": FORMAT, "listserv_version": self.version,
                "schema_revision": self.schema_revision, "backend": self.backend,
                "created": self.created, "counts": self.counts, **self.extra,
                "files": self.files}
        return json.dumps(data, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        """The manifest in `raw`; a ListservError when it is not one."""
        try:
            data = json.loads(raw)
            known = {"format", "listserv_version", "schema_revision", "backend", "created",
                     "counts", "files"}
            if data["format"] != FORMAT:
                raise ListservError(f"backup format {data['format']} is not known here")
            return cls(version=data["listserv_version"], schema_revision=data["schema_revision"],
                       backend=data["backend"], counts=dict(data["counts"]),
                       created=data["created"], files=dict(data["files"]),
                       extra={k: v for k, v in data.items() if k not in known})
        except (ValueError, KeyError, TypeError) as exc:
            raise ListservError(f"the manifest is not readable ({exc})") from None


class ArchiveWriter:
    """Adds members to a gzip'd tar, noting each one's size and sha256 for the manifest.

    The manifest is written last but, so that a reader meets it first, members go to a
    temporary tar that `finish` copies after the manifest.
    """

    def __init__(self, out: Any, body: Any) -> None:
        self._out = out
        self._body = tarfile.open(fileobj=body, mode="w")
        self._body_file = body
        self.files: dict[str, dict[str, Any]] = {}

    def add_bytes(self, name: str, data: bytes, mtime: float = 0) -> None:
        """Add one member holding `data`."""
        self._add(name, io.BytesIO(data), len(data), mtime, hashlib.sha256(data).hexdigest())

    def add_file(self, name: str, path: Path) -> None:
        """Add one member copied from the file at `path` (read twice: hashed, then copied)."""
        digest = hashlib.sha256()
        with open(path, "rb") as source:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                digest.update(chunk)
        size = path.stat().st_size
        with open(path, "rb") as source:
            self._add(name, source, size, path.stat().st_mtime, digest.hexdigest())

    def _add(self, name: str, source: Any, size: int, mtime: float, sha256: str) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, int(mtime), 0o600
        self._body.addfile(info, source)
        self.files[name] = {"size": size, "sha256": sha256}

    def finish(self, manifest: Manifest) -> None:
        """Write the manifest, then every member, into the gzip'd output."""
        self._body.close()
        manifest.files = self.files
        with tarfile.open(fileobj=self._out, mode="w:gz") as out:
            raw = manifest.to_json()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode = len(raw), 0o600
            out.addfile(info, io.BytesIO(raw))
            self._body_file.seek(0)
            with tarfile.open(fileobj=self._body_file, mode="r") as body:
                for member in body:
                    out.addfile(member, body.extractfile(member))


def safe_member_path(name: str) -> PurePosixPath:
    """`name` as a relative path inside the archive; a ListservError for anything else."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ListservError(f"the archive holds an unsafe name {name!r}")
    return path


def extract_verified(archive: Path, into: Path) -> Manifest:
    """Unpack `archive` into the empty folder `into`, checking it against its manifest.

    Every member must be a regular file the manifest names, with its size and sha256, and
    every file the manifest names must be there. A ListservError says what is wrong.
    """
    try:
        # The whole gzip stream first, to its CRC and length: tar stops reading at its end
        # marker, so damage to the padding after it or to the trailer would go unseen.
        with gzip.open(archive, "rb") as stream:
            while stream.read(1 << 20):
                pass
        with tarfile.open(archive, mode="r:gz") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise ListservError("it has no manifest.json at its start")
            manifest = Manifest.from_json(tar.extractfile(first).read())  # type: ignore[union-attr]
            seen: set[str] = set()
            while (member := tar.next()) is not None:  # on from the manifest, streaming
                _extract_one(tar, member, manifest, into)
                seen.add(member.name)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, ValueError) as exc:
        # Other OSErrors (the archive unreadable, the disk full) name what failed themselves.
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ListservError(f"it is damaged or truncated ({reason})") from None
    missing = sorted(set(manifest.files) - seen)
    if missing:
        raise ListservError(f"it is incomplete: {len(missing)} files named in the manifest "
                            f"are missing (first: {missing[0]})")
    return manifest


def _extract_one(tar: tarfile.TarFile, member: tarfile.TarInfo, manifest: Manifest,
                 into: Path) -> None:
    expected = manifest.files.get(member.name)
    if expected is None or not member.isfile():
        raise ListservError(f"it holds {member.name!r}, which the manifest does not name")
    target = into / safe_member_path(member.name)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    digest = hashlib.sha256()
    source = tar.extractfile(member)
    assert source is not None  # a regular file always has a body
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
    if member.size != expected["size"] or digest.hexdigest() != expected["sha256"]:
        raise ListservError(f"{member.name} does not match its sha256 in the manifest")
