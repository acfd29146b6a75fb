"""The private Postfix of tests/postfix.py is as strict as the brief says (issue 12): bare LF
refused with Postfix's own words, the error tarpit at its defaults, loopback-only routes."""

from __future__ import annotations

import smtplib

import pytest

from .helpers import make_message, parse

ANN = "ann@example.net"


def test_bare_lf_is_refused_and_crlf_delivered(postfix):
    postfix.configure(mailboxes=[ANN])
    postfix.start()
    assert postfix.postconf("mail_version").startswith("3.")
    assert postfix.postconf("smtpd_forbid_bare_newline") == "reject"
    assert postfix.postconf("smtpd_forbid_bare_newline_exclusions") == ""
    # The tarpit the delivery tests meet is Postfix's default one.
    assert [postfix.postconf(name) for name in (
        "smtpd_soft_error_limit", "smtpd_error_sleep_time", "smtpd_hard_error_limit")] == [
        "10", "1s", "20"]
    with smtplib.SMTP(postfix.host, postfix.port) as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("jane@example.net", [ANN],
                            b"From: jane@example.net\r\nSubject: bare\r\n\r\none\ntwo\r\n")
        assert refused.value.smtp_code == 550
        words = refused.value.smtp_error.decode()
        assert words.startswith("5.5.2 ") and words.endswith("Error: bare <LF> received")
        client.sendmail("jane@example.net", [ANN],
                        make_message(sender="jane@example.net", to=ANN, subject="Clean"))
    [delivered] = postfix.wait_for_mail(ANN)
    assert parse(delivered)["Subject"] == "Clean"
    assert "bare <LF> received" in postfix.log()


def test_unknown_mailboxes_and_other_domains_are_refused(postfix):
    postfix.configure(mailboxes=[ANN], lmtp={"lists.example.org": 9})
    postfix.start()
    with smtplib.SMTP(postfix.host, postfix.port) as client:
        client.mail("jane@example.net")
        assert client.rcpt(ANN)[0] == 250
        code, words = client.rcpt("nobody@example.net")
        assert (code, words.split()[0]) == (550, b"5.1.1")
        code, words = client.rcpt("someone@example.com")
        assert code == 554 and b"Relay access denied" in words
        assert client.rcpt("anyone@lists.example.org")[0] == 250  # relayed, by LMTP

