"""DKIM test keys made with openssl, and the TXT record that publishes each."""

from __future__ import annotations

import base64
import subprocess


def new_dkim_key(bits: int = 2048) -> bytes:
    """A fresh RSA private key (PEM), as a domain signs its mail with."""
    made = subprocess.run(["openssl", "genrsa", str(bits)], capture_output=True, check=False,
                          timeout=60)
    assert made.returncode == 0, made.stderr
    return made.stdout


def dkim_record_of(key_pem: bytes) -> bytes:
    """The `s._domainkey.d` TXT record publishing the public half of `key_pem`."""
    public = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=key_pem,
                            capture_output=True, check=False, timeout=60)
    assert public.returncode == 0, public.stderr
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public.stdout)
