"""The export of submissions for the editor (`submissions export`).

Per submission a folder with its latest revision's text and files, and an index (index.md,
index.json), into a new folder or a new zip file; every name in it is checked first. What it
writes is private (files 0600, folders 0700), like the data folder it comes from.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from listserv.column.desk import latest, word_count
from listserv.column.submissions import kb_text
from listserv.errors import ListservError
from listserv.files import open_private, private_folder
from listserv.mail import attachments as attachments
from listserv.mail.render import one_line
from listserv.store.audit import audit
from listserv.store.models.features import Submission


def _file_words(data: bytes, kind: str) -> int:
    """Words of a text-bearing attachment (txt, docx, odt); 0 for the others."""
    try:
        if kind == "txt":
            return word_count(data.decode("utf-8", "replace"))
        member = {"docx": "word/document.xml", "docm": "word/document.xml",
                  "odt": "content.xml"}.get(kind)
        if member is None:
            return 0
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo(member)
            if info.file_size > 50 * 1024 * 1024:
                return 0
            xml = archive.read(info).decode("utf-8", "replace")
        xml = re.sub(r"</(?:w:p|text:p|text:h)>", "\n", xml)
        return word_count(re.sub(r"<[^>]+>", " ", xml))
    except (KeyError, zipfile.BadZipFile, OSError, ValueError, RuntimeError):
        return 0


def export(session: Session, data_dir: Path, submissions: list[Submission], to: Path,
           now: datetime, actor: str) -> str:
    """One folder per submission (its latest revision's text and files) and an index, into a
    new folder `to` or a zip file `to` (*.zip)."""
    if not submissions:
        raise ListservError("no submissions to export")
    entries: list[tuple[str, bytes]] = []
    index: list[dict[str, Any]] = []
    top: set[str] = {"index.md", "index.json"}
    for submission in submissions:
        last = latest(submission)
        folder = attachments.safe_name(submission.tracking_id, top, default="submission")
        taken: set[str] = set()
        files = []
        words = word_count(last.body)
        if last.body.strip():
            name = attachments.safe_name("text.txt", taken)
            entries.append((f"{folder}/{name}", last.body.encode("utf-8")))
        source = data_dir / "submissions" / last.folder
        for item in last.files:
            try:
                data = attachments.inside(source, item["name"]).read_bytes()
            except (OSError, ValueError) as exc:
                raise ListservError(f"{submission.tracking_id}: cannot read {item['name']} "
                                    f"({exc})") from None
            name = attachments.safe_name(item["name"], taken)
            entries.append((f"{folder}/{name}", data))
            words += _file_words(data, item["type"])
            files.append({"name": name, "type": item["type"], "size": len(data),
                          "macros": bool(item.get("macros"))})
        index.append({
            "id": submission.tracking_id, "folder": folder, "title": submission.title,
            "author": submission.name or submission.sender, "sender": submission.sender,
            "date": submission.created_at.isoformat(), "status": submission.status,
            "deadline": submission.deadline, "member": submission.member,
            "revision": last.number, "issue": submission.issue, "word_count": words,
            "files": files,
        })
    entries.append(("index.json", (json.dumps(index, indent=2, ensure_ascii=False) + "\n")
                    .encode("utf-8")))
    entries.append(("index.md", _index_md(index, now).encode("utf-8")))
    _check_names([name for name, _ in entries])
    if to.suffix.lower() == ".zip":
        if to.exists():
            raise ListservError(f"{to} exists already")
        private_folder(to.parent)
        with open_private(to, "xb") as out, zipfile.ZipFile(out, "w",
                                                             zipfile.ZIP_DEFLATED) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    else:
        if to.exists() and (not to.is_dir() or any(to.iterdir())):
            raise ListservError(f"{to} exists and is not an empty folder")
        private_folder(to)
        for name, data in entries:
            parts = name.split("/")
            folder = to
            for part in parts[:-1]:
                folder = private_folder(attachments.inside(folder, part))
            attachments.write_inside(folder, parts[-1], data)
    ids = ", ".join(s.tracking_id for s in submissions)
    audit(session, now, actor, "column-exported", f"{ids} to {to}",
          submissions[0].list_id)
    return f"exported {len(submissions)} submission(s) to {to}"


def _check_names(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if (name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name
                or any(p in ("", ".", "..") for p in name.split("/"))):
            raise ListservError(f"refused an unsafe name in the export: {name!r}")
        folded = name.casefold()
        if folded in seen:
            raise ListservError(f"two files would share the name {name!r} in the export")
        seen.add(folded)


def _index_md(index: list[dict[str, Any]], now: datetime) -> str:
    lines = [f"# Column submissions ({len(index)})", "",
             f"Exported {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC.", ""]
    for item in index:
        lines += [f"## {item['id']}: {one_line(item['title']) or '(no title)'}", "",
                  f"- Author: {one_line(item['author'])} <{item['sender']}>",
                  f"- Received: {item['date'][:10]}",
                  f"- Status: {item['status']}"
                  + (f" ({one_line(item['issue'])})" if item["issue"] else ""),
                  f"- Deadline: {item['deadline'] or '-'}",
                  f"- Words: {item['word_count']}",
                  f"- Folder: {item['folder']}/", "- Files:"]
        lines += [f"  - {f['name']} ({f['type']}, {kb_text(f['size'])})"
                  + (" — macro-enabled: open with care" if f["macros"] else "")
                  for f in item["files"]] or ["  - (none)"]
        lines.append("")
    return "\n".join(lines)
