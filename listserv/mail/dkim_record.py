"""The public half of a DKIM signing key and the DNS TXT record that publishes it (RFC 6376
§3.6.1), read with dkimpy's key parsers.

`listserv doctor` compares a published record with the configured private key and, when they
differ, prints the record to publish. A DNS zone takes a TXT record as strings of at most 255
characters each, so `zone_strings()` splits it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from dkim.crypto import UnparsableKeyError, parse_pem_private_key, parse_public_key
from dkim.util import InvalidTagValueList, parse_tag_value

#: rsaEncryption (1.2.840.113549.1.1.1) with its NULL parameters: the AlgorithmIdentifier of
#: an RSA SubjectPublicKeyInfo (RFC 3279 §2.3.1).
_RSA_ALGORITHM = bytes.fromhex("300d06092a864886f70d0101010500")
#: The most a DNS TXT string holds (RFC 1035 §3.3).
MAX_TXT_STRING = 255


class KeyProblem(Exception):
    """A private key file or a published record that cannot be read as a DKIM RSA key."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An RSA public key: its modulus and exponent."""

    modulus: int
    exponent: int

    @property
    def bits(self) -> int:
        """The key's size in bits."""
        return self.modulus.bit_length()

    def record(self) -> str:
        """The TXT record publishing this key: `v=DKIM1; k=rsa; p=BASE64`."""
        rsa_key = _der(0x30, _der_integer(self.modulus) + _der_integer(self.exponent))
        info = _der(0x30, _RSA_ALGORITHM + _der(0x03, b"\x00" + rsa_key))
        return "v=DKIM1; k=rsa; p=" + base64.b64encode(info).decode("ascii")


def public_key_of_pem(pem: bytes) -> PublicKey:
    """The public half of a PEM RSA private key (PKCS#1 or PKCS#8)."""
    try:
        key = parse_pem_private_key(pem)
    except (UnparsableKeyError, ValueError, IndexError, binascii.Error) as exc:
        raise KeyProblem(f"not a PEM RSA private key ({exc})") from exc
    return PublicKey(int(key["modulus"]), int(key["publicExponent"]))


def public_key_of_record(record: str) -> PublicKey:
    """The key a DKIM TXT record publishes; `KeyProblem` when it publishes none (a revoked
    key's empty `p=`, another key type, an unreadable value)."""
    try:
        tags = parse_tag_value(record.encode("utf-8"))
    except InvalidTagValueList as exc:
        raise KeyProblem(f"not a DKIM key record ({exc})") from exc
    if tags.get(b"k", b"rsa").strip().lower() != b"rsa":
        raise KeyProblem(f"k={tags[b'k'].decode('ascii', 'replace')} is not an RSA key")
    data = b"".join(tags.get(b"p", b"").split())
    if not data:
        raise KeyProblem("p= is empty: the key is revoked")
    try:
        key = parse_public_key(base64.b64decode(data, validate=True))
    except (UnparsableKeyError, ValueError, IndexError, binascii.Error) as exc:
        raise KeyProblem(f"p= is not an RSA public key ({exc})") from exc
    return PublicKey(int(key["modulus"]), int(key["publicExponent"]))


def zone_strings(record: str) -> str:
    """The record as a zone file writes it: quoted strings of at most 255 characters."""
    return " ".join(f'"{record[i:i + MAX_TXT_STRING]}"'
                    for i in range(0, len(record), MAX_TXT_STRING))


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _der_integer(value: int) -> bytes:
    # A leading zero byte keeps a number whose top bit is set positive (DER two's complement).
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))
