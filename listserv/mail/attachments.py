"""Attachments of column submissions: safe file names and content sniffing.

Names come from mail, so from anyone: `safe_name` keeps only a bounded, plain, single path
component, and `write_inside` refuses any path that would leave its folder. The type of a
file is decided by its bytes (`sniff`), never by its name: a .docx is a zip holding
`[Content_Types].xml` and `word/`, any other zip is just a zip, a zip holding `vbaProject.bin`
is a macro-enabled Office file (flagged), an .exe renamed .pdf is an executable.
"""

from __future__ import annotations

import io
import os
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

from listserv.files import write_new_private

#: Longest file name we write, in UTF-8 bytes (most file systems allow 255).
MAX_NAME_BYTES = 120
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9]|conin\$|conout\$)$",
                               re.IGNORECASE)
_UNSAFE = re.compile(r'[\\/:*?"<>|]')


@dataclass(frozen=True, slots=True)
class Sniffed:
    """What the bytes of a file are: a short type name, a description, and warnings."""

    kind: str  # pdf, docx, xlsx, pptx, odt, rtf, txt, jpeg, png, zip, exe, unknown, ...
    label: str
    extension: str  # the extension a file of this kind should carry ("" = keep the name's)
    macros: bool = False


#: Types a submission may carry unless the list says otherwise (column.types).
DEFAULT_TYPES = ("pdf", "docx", "docm", "xlsx", "xlsm", "pptx", "pptm", "odt", "rtf", "txt",
                 "jpeg", "png")

_OFFICE = {
    "word/": ("docx", "docm", "a Word document", ".docx", ".docm"),
    "xl/": ("xlsx", "xlsm", "an Excel workbook", ".xlsx", ".xlsm"),
    "ppt/": ("pptx", "pptm", "a PowerPoint presentation", ".pptx", ".pptm"),
}


def _sniff_zip(data: bytes) -> Sniffed:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            names = [i.filename for i in infos]
            if infos and infos[0].filename == "mimetype" and infos[0].file_size < 200:
                mimetype = archive.read(infos[0]).decode("ascii", "replace").strip()
                if mimetype == "application/vnd.oasis.opendocument.text":
                    macros = any(n.lower().startswith("basic/") for n in names)
                    return Sniffed("odt", "an OpenDocument text", ".odt", macros)
                return Sniffed("zip", f"an OpenDocument file of another kind ({mimetype})", "")
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, NotImplementedError):
        return Sniffed("unknown", "a damaged zip archive", "")
    if "[Content_Types].xml" in names:
        macros = any(n.lower().rsplit("/", 1)[-1] == "vbaproject.bin" for n in names)
        for folder, (plain, macro_kind, label, ext, macro_ext) in _OFFICE.items():
            if any(n.startswith(folder) for n in names):
                if macros:
                    return Sniffed(macro_kind, f"{label} with macros", macro_ext, True)
                return Sniffed(plain, label, ext)
    return Sniffed("zip", "a zip archive (not an Office document)", "")


def _looks_like_text(data: bytes) -> bool:
    if b"\x00" in data[:65536]:
        return False
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        pass
    sample = data[:65536]
    printable = sum(1 for b in sample if b >= 32 or b in (9, 10, 13))
    return printable >= 0.95 * len(sample)


def sniff(data: bytes) -> Sniffed:
    """The type of `data` by its content (magic bytes; zip archives are looked into)."""
    if data.startswith(b"%PDF-"):
        return Sniffed("pdf", "a PDF document", ".pdf")
    if data.startswith(b"PK\x03\x04"):
        return _sniff_zip(data)
    if data.startswith(b"{\\rtf"):
        return Sniffed("rtf", "an RTF document", ".rtf")
    if data.startswith(b"\xff\xd8\xff"):
        return Sniffed("jpeg", "a JPEG image", ".jpg")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("png", "a PNG image", ".png")
    if data.startswith(b"MZ") or data.startswith(b"\x7fELF") or data[:4] in (
            b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe"):
        return Sniffed("exe", "an executable program", "")
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        return Sniffed("unknown", "an old-style Office file (not accepted: it may carry macros)",
                       "")
    if data and _looks_like_text(data):
        return Sniffed("txt", "plain text", ".txt")
    return Sniffed("unknown", "a file of an unknown kind", "")


def _truncate_bytes(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")[:limit]
    return encoded.decode("utf-8", "ignore")


def safe_name(raw: str | None, taken: set[str], *, extension: str = "",
              default: str = "attachment") -> str:
    """A file name safe to write in one folder, unique there (case-insensitively).

    Only the last path component of `raw` is kept; control characters, separators and the
    characters Windows forbids are replaced; no leading dots or spaces, no `.`/`..`, no
    reserved device names (CON, NUL, …); at most MAX_NAME_BYTES bytes. `extension` (from
    the sniffed type) replaces a name's extension that does not match it. The name is added
    to `taken` (a set of case-folded names).
    """
    text = unicodedata.normalize("NFC", str(raw or ""))
    text = "".join("_" if unicodedata.category(c)[0] == "C" else c for c in text)
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = _UNSAFE.sub("_", text)
    text = " ".join(text.split())
    text = text.lstrip(". ").rstrip(". ")
    stem, dot, ext = text.rpartition(".")
    if not dot:
        stem, ext = text, ""
    else:
        ext = "." + ext
    if len(ext) > 12 or not stem:
        stem, ext = text, ""
    if extension and ext.lower() != extension.lower() and not (
            extension == ".jpg" and ext.lower() == ".jpeg"):
        ext = extension
    stem = stem.strip(". ") or default
    if _WINDOWS_RESERVED.match(stem) or _WINDOWS_RESERVED.match(stem.split(".")[0]):
        stem = "_" + stem
    stem = _truncate_bytes(stem, MAX_NAME_BYTES - len(ext.encode("utf-8")) - 6).rstrip(". ")
    stem = stem or default
    candidate = stem + ext
    number = 2
    while candidate.casefold() in taken:
        candidate = f"{stem} ({number}){ext}"
        number += 1
    taken.add(candidate.casefold())
    return candidate


def inside(folder: Path, name: str) -> Path:
    """`folder / name`, refused unless it is a plain file name directly inside `folder`."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name
            or os.sep in name or (os.altsep and os.altsep in name)):
        raise ValueError(f"refused file name {name!r}")
    path = folder / name
    if path.resolve().parent != folder.resolve():
        raise ValueError(f"refused file name {name!r}: it leaves its folder")
    return path


def write_inside(folder: Path, name: str, data: bytes) -> Path:
    """Write a new private file `name` (0600) in `folder`, never overwriting, never elsewhere,
    and on disk before this returns."""
    return write_new_private(inside(folder, name), data)
