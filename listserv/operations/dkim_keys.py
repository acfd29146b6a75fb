"""`listserv dkim keygen DOMAIN`: a new DKIM signing key and the DNS record that publishes it.

The key is 2048-bit RSA (RFC 8301 asks for at least 1024; 2048 is what providers expect and
still fits a TXT record in two strings), written in PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`, the
form dkimpy reads) with mode 0600 to the file `[dkim]` names for the domain (or
`--key-file`, or `DATA_DIR/dkim/DOMAIN.SELECTOR.pem`). An existing file is never replaced:
a published record points at it; rotate with a new selector and a new file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from listserv.config import Settings
from listserv.config.dkim import valid_selector
from listserv.errors import ListservError
from listserv.files import open_private, private_folder
from listserv.mail.addresses import normalize_domain
from listserv.mail.dkim_record import public_record, txt_strings

KEY_BITS = 2048


@dataclass(frozen=True, slots=True)
class NewKey:
    """What `keygen` made: the key file, and the TXT record to publish at `name`."""

    domain: str
    selector: str
    key_file: Path
    name: str
    strings: list[str]
    configured: bool  # whether `[dkim]` already names this selector and file for the domain

    def zone_line(self) -> str:
        """The record as a zone-file line, its strings quoted in parentheses."""
        quoted = "\n".join(f'  "{text}"' for text in self.strings)
        return f"{self.name}. IN TXT (\n{quoted} )"


def keygen(settings: Settings, domain: str, now: datetime, selector: str = "",
           key_file: Path | None = None) -> NewKey:
    """Write a new key for `domain` (see the module's docstring) and describe its record."""
    domain = normalize_domain(domain)
    if "." not in domain or not domain.isascii():
        raise ListservError(f"{domain!r} is not a domain name")
    if selector and not valid_selector(selector):
        raise ListservError(f"{selector!r} is not a selector (DNS labels: letters, digits, '-')")
    configured = settings.dkim.key_for(domain)
    selector = selector or (configured.selector if configured else "") or f"s{now:%Y%m}"
    if key_file is None and configured is not None and configured.selector == selector:
        key_file = configured.private_key_file
    if key_file is None:
        key_file = settings.data_dir / "dkim" / f"{domain}.{selector}.pem"
    key_file = Path(key_file)
    if key_file.exists():
        raise ListservError(f"{key_file} exists: a published record may use it. Rotate with a "
                            "new selector (--selector) and a new file (--key-file)")
    private_folder(key_file.parent)
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    with open_private(key_file, "xb") as out:
        out.write(pem)
    same = (configured is not None and configured.selector == selector
            and Path(configured.private_key_file) == key_file)
    return NewKey(domain, selector, key_file, f"{selector}._domainkey.{domain}",
                  txt_strings(public_record(pem)), same)
