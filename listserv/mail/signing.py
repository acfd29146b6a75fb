"""DKIM signatures and ARC sets on the bytes that go on the wire (SPEC §3 "Signing"), by dkimpy.

The delivery worker is the one place every outgoing message passes after the serializer
(`mail.wire`) and after personalisation, so it signs there, with a `Signer` made once at the
daemon's start (which reads the key files: a key others may read is refused then):

- **ARC** (RFC 8617), distributed copies only, once per batch: the post's authentication
  (`identity.authentication.results`, recorded when the post was distributed) becomes the
  `ARC-Authentication-Results`, and `ARC-Message-Signature` and `ARC-Seal` (i = the next
  instance after the chain the post arrived with) follow. The message signature leaves out the
  headers each copy gets for itself (`List-Unsubscribe`, `List-Unsubscribe-Post`), so one set
  serves every personalised copy of a batch.
- **DKIM** (RFC 6376), every message, last: relaxed/relaxed, `h=` covering From, To, Cc,
  Subject, Date, Message-ID, the threading and `List-*` headers, `List-Unsubscribe` and
  `List-Unsubscribe-Post` (RFC 8058 §4) and the MIME headers present. A name in
  `ALWAYS_SIGNED` is signed even when absent, so nobody can add it on the way.

The signing domain is the domain the message is sent for: its list's, else its envelope
sender's (`delivery.claim.Batch.domain`); `[dkim]` says which domains are signed and with
which key. The ARC set's authserv-id is that domain too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dkim
import dkim.crypto
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from listserv.config import DkimSettings
from listserv.config.dkim import private_key

log = logging.getLogger(__name__)

#: Signed by the list's DKIM signature whether present or not (absent: nobody may add one).
ALWAYS_SIGNED = ("from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe",
                 "list-unsubscribe-post")
#: Signed when present, as many times as present.
SIGNED_WHEN_PRESENT = ("cc", "reply-to", "in-reply-to", "references", "sender", "list-post",
                       "list-help", "list-subscribe", "list-archive", "list-owner",
                       "mime-version", "content-type", "content-transfer-encoding",
                       "content-id", "content-description", "content-disposition")
#: Per-copy headers: never in an ARC message signature, which serves every copy of a batch.
PER_COPY = frozenset({"list-unsubscribe", "list-unsubscribe-post"})


@dataclass(frozen=True, slots=True)
class Key:
    """A domain's signing key: its selector and PEM private key."""

    selector: str
    pem: bytes


def _header_names(data: bytes) -> list[str]:
    """The names of the fields of `data`'s header, lower-cased, top first."""
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[: end + 2]
    names = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") or b":" not in line:
            continue
        names.append(line.partition(b":")[0].strip().lower().decode("ascii", "replace"))
    return names


def dkim_headers(data: bytes) -> list[bytes]:
    """The `h=` list of the list's DKIM signature for `data` (see the module's docstring)."""
    present = _header_names(data)
    names = []
    for name in ALWAYS_SIGNED + SIGNED_WHEN_PRESENT:
        count = present.count(name)
        if count or name in ALWAYS_SIGNED:
            names += [name] * max(count, 1)
    return [name.encode("ascii") for name in names]


def ams_headers(data: bytes) -> list[bytes]:
    """The `h=` list of an ARC-Message-Signature for `data`: what the DKIM signature signs,
    less the per-copy headers, only as present."""
    present = _header_names(data)
    names = []
    for name in ALWAYS_SIGNED + SIGNED_WHEN_PRESENT:
        if name not in PER_COPY:
            names += [name] * present.count(name)
    return [name.encode("ascii") for name in names]


# -- RSA by OpenSSL -------------------------------------------------------------------------------
# dkimpy computes RSA signatures in pure Python: 6.5 ms of CPU per 2048-bit signature on the
# development machine, against 0.3 ms through OpenSSL (`cryptography`). A personalised copy
# needs one, so that is the difference between about 150 and about 1,500 copies a second per
# core. dkimpy has no hook for the signing primitive: `use_openssl` replaces its
# `RSASSA_PKCS1_v1_5_sign` (looked up by dkimpy at each call) with one that hands the digest
# to OpenSSL. PKCS#1 v1.5 signatures are deterministic, so the bytes are exactly dkimpy's own
# (tests/test_signing.py compares them); a hash or key it does not expect goes to dkimpy's.

_PURE_SIGN = dkim.crypto.RSASSA_PKCS1_v1_5_sign
_HASHES: dict[str, hashes.HashAlgorithm] = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}
_openssl_keys: dict[int, rsa.RSAPrivateKey] = {}
_patch_lock = threading.Lock()


def _openssl_key(key: dict[str, Any]) -> rsa.RSAPrivateKey:
    """dkimpy's parsed private key as an OpenSSL one (made once per key)."""
    found = _openssl_keys.get(key["modulus"])
    if found is None:
        public = rsa.RSAPublicNumbers(key["publicExponent"], key["modulus"])
        found = rsa.RSAPrivateNumbers(
            key["prime1"], key["prime2"], key["privateExponent"], key["exponent1"],
            key["exponent2"], key["coefficient"], public).private_key()
        _openssl_keys[key["modulus"]] = found
    return found


def _openssl_sign(digest: Any, key: dict[str, Any]) -> bytes:
    """dkimpy's `RSASSA_PKCS1_v1_5_sign(hash, private_key)`, computed by OpenSSL."""
    algorithm = _HASHES.get(str(getattr(digest, "name", "")).lower())
    if algorithm is None or not isinstance(key, dict):
        return _PURE_SIGN(digest, key)
    return _openssl_key(key).sign(digest.digest(), padding.PKCS1v15(), Prehashed(algorithm))


def use_openssl() -> None:
    """Make dkimpy sign through OpenSSL (see above); idempotent."""
    with _patch_lock:
        dkim.RSASSA_PKCS1_v1_5_sign = _openssl_sign


class Signer:
    """Signs and seals for the domains `[dkim]` names; shared by a daemon's delivery workers
    (it holds no state but the keys)."""

    def __init__(self, keys: Callable[[str], Key | None], arc: bool = True) -> None:
        """`keys`: the key for a domain, None when that domain is not signed."""
        self._keys = keys
        self.arc = arc
        use_openssl()

    @classmethod
    def from_settings(cls, settings: DkimSettings) -> Signer | None:
        """A signer for `[dkim]`, every key file read now; None when nothing is signed.

        Raises `ConfigError` for a key file that is missing, not private, or no key."""
        if not settings.enabled:
            return None
        pems = {key.private_key_file: private_key(key)
                for key in (settings.default, *settings.keys) if key is not None}

        def keys(domain: str) -> Key | None:
            key = settings.key_for(domain)
            return None if key is None else Key(key.selector, pems[key.private_key_file])

        return cls(keys, settings.arc)

    def sign(self, data: bytes, domain: str) -> bytes:
        """`data` with the list's DKIM signature prepended (unchanged if `domain` is not
        signed, or if dkimpy cannot sign it: the message still goes, and the log says why)."""
        key = self._keys(domain)
        if key is None:
            return data
        try:
            signature = dkim.sign(data, key.selector.encode("ascii"), domain.encode("ascii"),
                                  key.pem, canonicalize=(b"relaxed", b"relaxed"),
                                  include_headers=dkim_headers(data), logger=log)
        except Exception as exc:  # dkimpy raises more than DKIMException on odd input
            log.warning("not DKIM-signed for %s: %s: %s", domain, type(exc).__name__, exc)
            return data
        return signature + data

    def arc_set(self, data: bytes, domain: str, results: str) -> bytes:
        """The ARC set to prepend to `data` and to its personalised copies, recording
        `results` (the post's authentication results, `method=result …; …`); b"" when ARC is
        off, `domain` is not signed, or `results` is empty (mail we composed ourselves)."""
        key = self._keys(domain) if self.arc and results else None
        if key is None:
            return b""
        # dkimpy reads the results from an Authentication-Results header of our authserv-id
        # (`domain`); only ours counts, so the post's own ones under that name are left out.
        authserv = f"Authentication-Results: {domain};\r\n {results}\r\n".encode()
        try:
            arc_set = dkim.arc_sign(authserv + _without_results_of(data, domain),
                                    key.selector.encode("ascii"), domain.encode("ascii"),
                                    key.pem, domain.encode("ascii"),
                                    include_headers=ams_headers(data), logger=log)
        except Exception as exc:
            log.warning("no ARC set for %s: %s: %s", domain, type(exc).__name__, exc)
            return b""
        return b"".join(arc_set)


def _without_results_of(data: bytes, authserv_id: str) -> bytes:
    """`data` without the Authentication-Results headers claiming to be `authserv_id`'s (the
    sender wrote those: RFC 8601 §5). The set is prepended to `data` itself: the message
    signature does not cover Authentication-Results, so it holds for both."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or b"authentication-results" not in data[:end].lower():
        return data
    fields: list[list[bytes]] = []
    for line in data[: end + 2].split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    wanted = authserv_id.lower().encode()
    kept = []
    for field in fields:
        name, _, value = b" ".join(field).partition(b":")
        own = (name.strip().lower() == b"authentication-results"
               and value.strip().lower().split(b";")[0].split(b" ")[0] == wanted)
        if not own:
            kept.append(b"\r\n".join(field) + b"\r\n")
    return b"".join(kept) + data[end + 2:]
