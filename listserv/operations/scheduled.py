"""Backups taken by the scheduler (`[backup] every_hours`, `keep`; docs/operations.md).

A backup is named by the time it was taken (`listserv-20261206T190000Z.tar.gz`); the newest
one's name says when the next is due, so a restart neither repeats one nor skips one. After
each, only the newest `keep` stay in the folder.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from listserv.config import Settings
from listserv.files import private_folder
from listserv.operations.backup import take_backup
from listserv.store.engine import Store

log = logging.getLogger(__name__)

NAME: Final = re.compile(r"^listserv-(\d{8}T\d{6}Z)\.tar\.gz$")
STAMP: Final = "%Y%m%dT%H%M%SZ"


class ScheduledBackups:
    """Called on each scheduler run: takes a backup when one is due, then rotates."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, store: Store, now: datetime) -> Path | None:
        """The backup taken now, or None when none is due (or none is configured)."""
        every = self.settings.backup.every_hours
        if every <= 0:
            return None
        folder = private_folder(self.settings.backup_dir)
        taken = backups(folder)
        if taken and now - taken[-1][0] < timedelta(hours=every):
            return None
        path = folder / f"listserv-{now.astimezone(UTC).strftime(STAMP)}.tar.gz"
        take_backup(self.settings, store, path)
        log.info("backup: wrote %s", path)
        for _, old in backups(folder)[:-self.settings.backup.keep]:
            old.unlink(missing_ok=True)
            log.info("backup: removed %s (keep = %d)", old, self.settings.backup.keep)
        return path


def backups(folder: Path) -> list[tuple[datetime, Path]]:
    """The scheduled backups in `folder`, oldest first (other files are left alone)."""
    found = []
    for path in folder.iterdir():
        match = NAME.match(path.name)
        if match:
            found.append((datetime.strptime(match.group(1), STAMP).replace(tzinfo=UTC), path))
    return sorted(found)
