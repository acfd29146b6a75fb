"""`[dkim]`: the signing keys, read from the table and, when a signer is made, from their files.

The table gives a default key (`selector`, `private_key_file`; `selector = ""` means none) and
per-domain overrides (`[dkim.keys."DOMAIN"]`, each inheriting the selector or the file it
leaves out). The key files are read only when a signer is made (the daemon's start), not when
the settings are loaded: `listserv dkim keygen` must be able to create the file the config
already names. A key file that group or others may read is refused, as a `password_file` is
(SPEC §7 "Files").
"""

from __future__ import annotations

import os
import re
import stat
from typing import Final

from dkim.crypto import parse_pem_private_key

from listserv.config.settings import DkimKey, DkimSettings
from listserv.config.tables import Table, dotted
from listserv.errors import ConfigError

_OTHERS_READ: Final = stat.S_IRGRP | stat.S_IROTH
# A selector is one or more DNS labels (RFC 6376 §3.1).
_SELECTOR: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                              r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_DOMAIN: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}"
                            r"[a-z0-9])?)+")


def valid_selector(value: str) -> bool:
    """Whether `value` may be a DKIM selector: one or more DNS labels."""
    return _SELECTOR.fullmatch(value) is not None


def _selector(table: Table, default: str) -> str:
    value = table.string("selector", default).strip()
    if value and not valid_selector(value):
        raise table.error("selector", f"{value!r} is not a DNS label (letters, digits, '-')")
    return value


def _domain(table: Table, name: str, value: str) -> str:
    domain = value.strip().rstrip(".").lower()
    if not _DOMAIN.fullmatch(domain):
        raise table.error(name, f"{value!r} is not a domain name")
    return domain


def read_dkim(table: Table) -> DkimSettings:
    """The `[dkim]` table (its key files are not read here: see `private_key`)."""
    selector = _selector(table, "")
    key_file = table.path("private_key_file", "")
    default = None
    if selector:
        if key_file is None:
            raise table.error("private_key_file", "must name the key file when selector is set")
        default = DkimKey("", selector, key_file, dotted((*table.key, "private_key_file")),
                          table.loader.label((*table.key, "private_key_file")))
    domains = [_domain(table, "domains", d) for d in table.strings("domains")]
    keys = []
    overrides = table.table("keys")
    for name in overrides.data:
        entry = overrides.table(str(name))
        domain = _domain(overrides, str(name), str(name))
        entry_selector = _selector(entry, selector)
        entry_file = entry.path("private_key_file", "") or key_file
        entry.finish()
        if not entry_selector or entry_file is None:
            raise entry.error("selector", "needs a selector and a private_key_file (its own or "
                                          "those of [dkim])")
        setting = (*entry.key, "private_key_file")
        if "private_key_file" not in entry.data:
            setting = (*table.key, "private_key_file")
        keys.append(DkimKey(domain, entry_selector, entry_file, dotted(setting),
                            table.loader.label(setting)))
    overrides.finish()
    settings = DkimSettings(default=default, domains=tuple(dict.fromkeys(domains)),
                            keys=tuple(keys), arc=table.boolean("arc", True))
    table.finish()
    return settings


def private_key(key: DkimKey) -> bytes:
    """The PEM bytes of `key`'s file; a `ConfigError` naming the setting and its file when it
    is missing, unreadable, readable by group or others, or holds no PEM private key."""
    where = f"{key.source}: {key.setting}"
    path = key.private_key_file
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{where}: cannot read '{path}': {reason} (make one with "
                          f"`listserv dkim keygen {key.domain or 'DOMAIN'}`)") from exc
    if mode & _OTHERS_READ:
        raise ConfigError(f"{where}: '{path}' is readable by group or others (mode "
                          f"{stat.S_IMODE(mode):04o}); make it private: chmod 600 '{path}'")
    try:
        parse_pem_private_key(data)  # dkimpy's own reader: what it cannot read, it cannot sign
    except Exception as exc:  # dkimpy's ASN.1 reader raises assorted errors on other forms
        raise ConfigError(f"{where}: '{path}' holds no RSA private key in PEM form (PKCS#1 "
                          "or PKCS#8, as `listserv dkim keygen` writes)") from exc
    return data

