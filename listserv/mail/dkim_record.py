"""The public half of a DKIM signing key and the DNS TXT record that publishes it (RFC 6376
§3.6.1), with the `cryptography` library.

`listserv dkim keygen` prints the record of a new key; `listserv doctor` compares a published
record with the configured private key and, when they differ, prints the record to publish. A
DNS zone takes a TXT record as strings of at most 255 characters each (`txt_strings`).
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dkim.util import InvalidTagValueList, parse_tag_value

#: The longest character-string of a TXT record (RFC 1035 §3.3.14).
MAX_TXT_STRING = 255


class KeyProblem(Exception):
    """A private key file or a published record that cannot be read as a DKIM RSA key."""


def _spki(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_of_pem(pem: bytes) -> rsa.RSAPublicKey:
    """The public half of a PEM RSA private key (PKCS#1 or PKCS#8)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyProblem(f"not a PEM RSA private key ({exc})") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyProblem("not an RSA key (DKIM here signs with rsa-sha256)")
    return key.public_key()


def public_record(pem: bytes) -> str:
    """The DKIM key record (`v=DKIM1; k=rsa; p=…`) publishing the public half of `pem`."""
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(_spki(public_key_of_pem(pem))).decode("ascii")


def public_key_of_record(record: str) -> rsa.RSAPublicKey:
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
        key = serialization.load_der_public_key(base64.b64decode(data, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise KeyProblem(f"p= is not an RSA public key ({exc})") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyProblem("p= is not an RSA public key")
    return key


def same_key(a: rsa.RSAPublicKey, b: rsa.RSAPublicKey) -> bool:
    """Whether two public keys are the same key."""
    return a.public_numbers() == b.public_numbers()


def txt_strings(record: str) -> list[str]:
    """`record` split into the character-strings of one TXT record, each at most 255."""
    return [record[i:i + MAX_TXT_STRING] for i in range(0, len(record), MAX_TXT_STRING)]


def zone_strings(record: str) -> str:
    """The record as a zone file writes it: quoted strings of at most 255 characters."""
    return " ".join(f'"{text}"' for text in txt_strings(record))
