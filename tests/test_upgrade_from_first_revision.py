"""A store made by the first schema revision, with rows in every table, upgrades to the current
schema with every row kept (issue 19, acceptance 5).

The rows go in with SQL, as the code of that time wrote them: at revision 0001 into each of its
tables, and at 0004 into the tables 0002 to 0004 added, before 0007 and 0012 rebuild `inbound`,
`members` and `meetings` on SQLite (a rebuild with foreign keys on would cascade to the rows
that point at them). Then `listserv init` migrates the store, as an operator upgrades.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from cli import main
from listserv.store.engine import Store

from .test_upgrades import HEAD

AT = datetime(2026, 11, 20, 9, 0)
LATER = datetime(2026, 12, 20, 9, 0)

#: The rows written at revision 0001: every table that revision has.
AT_0001: dict[str, list[dict[str, object]]] = {
    "lists": [dict(id=1, name="shma", domain="lists.example.org", description="Shared meetings",
                   policy="open", nonmember_action="hold", reply_to="list",
                   subject_prefix="[shma]", footer=None, max_post_kb=512, personalize=False,
                   dmarc_mitigation="auto", held_expiry_days=14, resources="", archive_url="",
                   extra="{}", created_at=AT)],
    "owners": [dict(id=1, list_id=1, email="chair@example.org")],
    "members": [dict(id=n, list_id=1, email=f"member{n}@example.org", name=f"Member {n}",
                     delivery="regular", status="active", bounce_token=f"b{n:039d}",
                     leave_token=f"l{n:039d}", created_at=AT) for n in (1, 2, 3)],
    "inbound": [dict(id=n, received_at=AT, mail_from="stranger@example.net",
                     rcpt="shma@lists.example.org", list_id=1, role="post", token="",
                     raw=b"Subject: held %d\r\n\r\nbody\r\n" % n, size=30, status="done",
                     outcome="held", error="", processed_at=AT) for n in (1, 2)],
    "held": [dict(id=n, list_id=1, inbound_id=n, sender="stranger@example.net",
                  subject=f"held {n}", reason="not a member", status="waiting", created_at=AT,
                  expires_at=LATER, decided_at=None, decided_by="") for n in (1, 2)],
    "out_messages": [dict(id=1, list_id=1, kind="post", raw=b"Subject: sent\r\n\r\nhi\r\n",
                          envelope_from="shma-bounces@lists.example.org", personalize=False,
                          created_at=AT)],
    "out_recipients": [dict(id=n, message_id=1, member_id=n, email=f"member{n}@example.org",
                            status="sent", attempts=1, next_attempt_at=AT, lease_until=None,
                            last_error="", sent_at=AT) for n in (1, 2)],
    "audit_log": [dict(id=1, at=AT, actor="chair@example.org", action="member.add", list_id=1,
                       detail="member1@example.org")],
    "once": [dict(id=1, kind="welcome", key="member1@example.org", at=AT)],
    "auto_mail": [dict(id=1, address="stranger@example.net", kind="held", at=AT,
                       suppressed=False)],
}

#: The rows written at revision 0004: the tables 0002 to 0004 added, pointing at rows above.
AT_0004: dict[str, list[dict[str, object]]] = {
    "requests": [dict(id=1, list_id=1, kind="subscribe", email="newcomer@example.org",
                      name="Newcomer", delivery="regular", lang="en", status="waiting",
                      token="r" * 40, requested_by="newcomer@example.org", summary="join",
                      inbound_id=2, created_at=AT, expires_at=LATER, decided_at=None,
                      decided_by="")],
    "bounce_scores": [dict(member_id=2, list_id=1, score=2.5, last_bounce_at=AT,
                           counted_on="2026-11-20", day_weight=1.0, last_reason="5.1.1",
                           disabled_at=None, warnings_sent=0, next_step_at=None)],
    "bounce_events": [dict(id=1, list_id=1, member_id=2, at=AT, source="dsn", kind="hard",
                           counted=True, verified=True, weight=1.0, reason="5.1.1",
                           inbound_id=1)],
    "bounce_probes": [dict(id=1, token="p" * 40, list_id=1, member_id=2, warning=1,
                           out_recipient_id=2, status="sent", sent_at=AT, accepted_at=None)],
    "meeting_series": [dict(id=1, list_id=1, rrule="FREQ=MONTHLY;BYDAY=1TU", first_start=AT,
                            tz="Europe/Berlin", duration=60, dial_in="https://meet.example",
                            active=True, created_at=AT)],
    "meetings": [dict(id=1, list_id=1, series_id=1, occurrence=LATER, start=LATER,
                      tz="Europe/Berlin", duration=60, dial_in="https://meet.example",
                      status="scheduled", uid="m1@lists.example.org", sequence=0,
                      created_at=AT, updated_at=AT)],
    "meeting_reminders": [dict(id=1, meeting_id=1, offset_minutes=1440, status="sent",
                               due_at=AT, at=AT, recipients=3, detail="")],
    "peer_input": [dict(id=1, list_id=1, meeting_id=1, email="member1@example.org",
                        name="Member 1", project="Roof", help="ladders", minutes=10,
                        requested_minutes=10, status="accepted", pinned=False, lang="en",
                        inbound_id=2, created_at=AT, decided_at=None, decided_by="",
                        reason="")],
}


def insert(store: Store, rows: dict[str, list[dict[str, object]]]) -> None:
    """Write the rows with plain SQL (the models describe the current schema, not that one)."""
    with store.engine.begin() as connection:
        for table, values in rows.items():
            columns = list(values[0])
            connection.execute(text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                                    f"({', '.join(':' + c for c in columns)})"), values)
        if connection.dialect.name == "postgresql":  # explicit ids leave the sequences behind
            for table in rows:
                if "id" in rows[table][0]:
                    connection.execute(text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"))


def query(store: Store, sql: str) -> list[tuple[object, ...]]:
    with store.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


@pytest.mark.both_backends
def test_a_store_from_the_first_revision_upgrades_with_every_row_kept(db_url, config_path):
    def cli(*args: str) -> str:
        result = CliRunner().invoke(main, ["--config", str(config_path), *args])
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output

    store = Store(db_url)
    store.migrate("0001")
    insert(store, AT_0001)
    store.migrate("0004")
    insert(store, AT_0004)

    output = cli("init")
    assert f"migrated the database from schema revision 0004 to {HEAD}" in output
    assert store.schema_revision() == HEAD

    for table, rows in {**AT_0001, **AT_0004}.items():
        assert query(store, f"SELECT count(*) FROM {table}") == [(len(rows),)], table
    assert query(store, "SELECT id, inbound_id, subject, status FROM held ORDER BY id") == [
        (1, 1, "held 1", "waiting"), (2, 2, "held 2", "waiting")]
    # The references to rebuilt tables still point where they pointed (not set to NULL).
    assert query(store, "SELECT inbound_id FROM requests") == [(2,)]
    assert query(store, "SELECT inbound_id FROM bounce_events") == [(1,)]
    assert query(store, "SELECT meeting_id, inbound_id FROM peer_input") == [(1, 2)]
    assert query(store, "SELECT member_id FROM bounce_scores") == [(2,)]
    assert query(store, "SELECT member_id FROM out_recipients ORDER BY id") == [(1,), (2,)]
    # What later revisions added has its value for old rows.
    assert query(store, "SELECT count(*) FROM members WHERE language = ''") == [(3,)]
    assert query(store, "SELECT announced_at IS NOT NULL FROM meetings") == [(True,)]
    raws = query(store, "SELECT r.raw FROM inbound i JOIN inbound_raw r ON r.id = i.raw_id "
                        "ORDER BY i.id")
    assert [bytes(raw) for (raw,) in raws] == [AT_0001["inbound"][n]["raw"] for n in (0, 1)]

    # The upgraded store works: the chair's listings read the old rows through the models.
    assert "member3@example.org" in cli("members", "list", "shma@lists.example.org")
    assert "newcomer@example.org" in cli("requests", "list", "shma@lists.example.org")
    held = cli("held", "list", "shma@lists.example.org")
    assert "held 1" in held and "held 2" in held
    shown = cli("held", "show", "2")  # its text, from the bytes 0013 moved to inbound_raw
    assert "subject: held 2" in shown and shown.rstrip().endswith("body")
    store.dispose()
