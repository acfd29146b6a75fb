"""`members import` and `members export` through the command line (SPEC §4, acceptance 8)."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from listserv.store.models.core import Member
from listserv.store.models.outgoing import AutoMail, OutMessage, OutRecipient

from .helpers import LIST, wait_settled
from .test_quickstart import LISTSERV

OTHER = "other@lists.example.org"


def members_json(cli, list_ref: str) -> list[dict[str, str]]:
    rows = json.loads(cli("members", "list", list_ref, "--json").stdout)
    assert isinstance(rows, list)
    return rows


def count(store, model) -> int:
    with store.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(model))


def skipped_lines(stderr: str) -> list[int]:
    return [int(n) for n in re.findall(r"^skipped line (\d+): ", stderr, re.MULTILINE)]


# -- acceptance 8: a big import with bad rows ---------------------------------------------------


def big_roster(tmp_path: Path) -> tuple[Path, dict[int, str], int]:
    """10,000 data rows, 20 of them bad: (file, {line: bad row}, number of good rows)."""
    bad_addresses = [
        "not-an-address", "jane.example.org", "two@@example.org", "@example.org", "jane@",
        "jane doe@example.org", "jane@example", "jane..doe@example.org", "jane@exa_mple.org",
        "", "<jane@example.org", "jane@-example.org",
    ]
    # line -> row; line 1 is the header
    bad = {200 + 500 * i: f"{cell},Bad {i},regular" for i, cell in enumerate(bad_addresses)}
    bad |= {
        9000: "weekly@example.net,Bad delivery,weekly",
        9001: "often@example.net,Bad delivery,sometimes",
        # duplicates of earlier rows, some differing only in case
        9500: "member00002@example.net,Again,regular",
        9501: "MEMBER00003@Example.NET,Again in capitals,digest",
        9502: "member00004@example.net,,",
        9503: "member00005@EXAMPLE.net,Again,nomail",
        9504: "member00006@example.net,Twice,regular",
        9505: " member00007@example.net ,Spaces around,regular",
    }
    lines = ["email,name,delivery"]
    good = 0
    for line in range(2, 10_002):
        if line in bad:
            lines.append(bad[line])
            continue
        delivery = ("regular", "digest", "nomail", "")[good % 4]
        lines.append(f"member{good:05d}@example.net,Member {good:05d},{delivery}")
        good += 1
    assert len(lines) == 10_001 and len(bad) == 20
    path = tmp_path / "roster.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, bad, good


@pytest.mark.both_backends
def test_import_of_10000_rows_skips_the_20_bad_ones_and_mails_nobody(
        cli, shma, store, daemon, sink, tmp_path):
    path, bad, good = big_roster(tmp_path)
    assert good == 9_980

    started = time.monotonic()
    result = cli("members", "import", shma, str(path))
    elapsed = time.monotonic() - started
    print(f"members import of 10,000 rows (20 bad): {elapsed:.2f} s")

    assert "imported 9980 members" in result.stdout
    assert "skipped 20 rows" in result.stdout
    # Each bad row named by its line number, on stderr; no progress bar off a terminal.
    assert sorted(skipped_lines(result.stderr)) == sorted(bad)
    assert "skipped" not in result.stdout.replace("skipped 20 rows", "")
    assert "importing" not in result.stderr
    assert "'not-an-address' is not an email address" in result.stderr
    assert "delivery 'weekly' is not one of regular, digest, digest-plain, nomail" in result.stderr
    assert "line 9501: member00003@example.net is already on line" in result.stderr

    rows = members_json(cli, shma)
    assert len(rows) == 9_980
    by_email = {r["email"]: r for r in rows}
    assert len(by_email) == 9_980
    assert by_email["member00000@example.net"] == {
        "email": "member00000@example.net", "name": "Member 00000", "delivery": "regular",
        "language": "", "status": "active", "list": LIST,
    }
    assert by_email["member00001@example.net"]["delivery"] == "digest"
    assert by_email["member00002@example.net"]["delivery"] == "nomail"
    assert by_email["member00003@example.net"]["delivery"] == "regular"  # "" = regular
    assert by_email["member00003@example.net"]["name"] == "Member 00003"  # first row wins
    assert {r["status"] for r in rows} == {"active"}
    assert not {"weekly@example.net", "often@example.net"} & by_email.keys()

    # Nobody was mailed: nothing queued, nothing counted against the cap ...
    assert count(store, OutMessage) == 0
    assert count(store, OutRecipient) == 0
    assert count(store, AutoMail) == 0
    # ... and nothing reaches the sink: a welcome sent after the import is the only mail.
    cli("members", "add", shma, "canary@example.org")
    sink.wait_for_recipients(1)
    wait_settled(store)
    assert [d.rcpt_tos for d in sink.deliveries] == [["canary@example.org"]]

    log = json.loads(cli("log", "--json").stdout)
    imports = [e for e in log if e["action"] == "members-imported"]
    assert len(imports) == 1 and imports[0]["list"] == LIST
    assert "9980 added, 20 skipped" in imports[0]["detail"]


def test_import_names_lines_as_they_are_in_the_file(cli, shma, tmp_path):
    """Blank lines and quoted cells over several lines do not shift the line numbers."""
    path = tmp_path / "odd.csv"
    path.write_text(
        "Email , NAME\n"            # 1: header names are matched loosely
        "\n"                        # 2: blank, skipped by CSV
        'ann@example.org,"Ann\n'    # 3
        'Smith"\n'                  # 4
        "bad,Bad\n"                 # 5
        "ann@example.org,Ann again\n",  # 6
        encoding="utf-8",
    )
    result = cli("members", "import", shma, str(path))
    assert skipped_lines(result.stderr) == [5, 6]
    assert "line 6: ann@example.org is already on line 3" in result.stderr
    assert [(r["email"], r["name"]) for r in members_json(cli, shma)] == [
        ("ann@example.org", "Ann Smith")]


def test_import_of_a_present_member_is_skipped(cli, shma, tmp_path):
    cli("members", "add", shma, "bob@example.org", "--name", "Bob", "--no-welcome")
    path = tmp_path / "again.csv"
    path.write_text("email,name\nBob@Example.org,Robert\ncid@example.org,Cid\n")
    result = cli("members", "import", shma, str(path))
    assert "line 2: bob@example.org is already a member" in result.stderr
    assert "imported 1 members" in result.stdout
    assert {r["email"]: r["name"] for r in members_json(cli, shma)} == {
        "bob@example.org": "Bob", "cid@example.org": "Cid"}


@pytest.mark.parametrize(("content", "message"), [
    (b"name,delivery\nAnn,regular\n", "the first row must name the columns, including 'email'"),
    (b"", "the first row must name the columns, including 'email'"),
    (b"email,name\nann@example.org,Ren\xe9e\n", "not UTF-8 text"),
])
def test_import_of_an_unusable_file_is_one_clear_error(cli, shma, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = cli("members", "import", shma, str(path), ok=False)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}: {message}")
    assert "Traceback" not in result.output
    assert members_json(cli, shma) == []


def test_import_of_a_missing_file_is_a_usage_error(cli, shma, tmp_path):
    result = cli("members", "import", shma, str(tmp_path / "nowhere.csv"), ok=False)
    assert result.exit_code == 2
    assert "nowhere.csv" in result.stderr
    assert "Traceback" not in result.output


def test_import_accepts_a_byte_order_mark_and_spreadsheet_escapes(cli, shma, tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("email,name\r\n'-dash@example.org,'=Dora\r\n".encode("utf-8-sig"))
    cli("members", "import", shma, str(path))
    assert [(r["email"], r["name"]) for r in members_json(cli, shma)] == [
        ("-dash@example.org", "=Dora")]


# -- export ------------------------------------------------------------------------------------

TRICKY_NAMES = {
    "formula@example.org": "=HYPERLINK(\"http://evil.example\",\"click\")",
    "plus@example.org": "+44 20 7946 0000",
    "minus@example.org": "-Minus Person",
    "at@example.org": "@handle",
    "quote@example.org": "'=already quoted",
    "apostrophe@example.org": "'Tis Me",
    "comma@example.org": "Zoë \"Zed\" O'Brien, Jr.",
    "plain@example.org": "Plain Person",
    "noname@example.org": "",
    "-dash@example.org": "Dash Address",
    "unicode@example.org": "Łukasz Żółć 李小龍",
}


@pytest.fixture
def tricky_roster(cli, shma):
    for email, name in TRICKY_NAMES.items():
        # "--" ends the options, so an address may start with "-".
        cli("members", "add", shma, "--name", name, "--no-welcome", "--", email)
    cli("members", "add", shma, "digest@example.org", "--no-welcome")
    return shma


def test_export_writes_the_columns_and_escapes_formula_cells(cli, tricky_roster):
    result = cli("members", "export", tricky_roster)
    assert result.stdout.startswith("email,name,delivery\n")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["email", "name", "delivery"]
    cells = {r["email"]: r for r in rows}
    assert cells["formula@example.org"]["name"] == "'" + TRICKY_NAMES["formula@example.org"]
    assert cells["plus@example.org"]["name"] == "'+44 20 7946 0000"
    assert cells["minus@example.org"]["name"] == "'-Minus Person"
    assert cells["at@example.org"]["name"] == "'@handle"
    assert cells["'-dash@example.org"]["name"] == "Dash Address"
    assert cells["comma@example.org"]["name"] == TRICKY_NAMES["comma@example.org"]
    assert cells["plain@example.org"] == {"email": "plain@example.org", "name": "Plain Person",
                                          "delivery": "regular"}
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@")), row
    assert len(rows) == len(TRICKY_NAMES) + 1


@pytest.mark.both_backends
def test_export_then_import_into_another_list_round_trips(cli, tricky_roster, store, tmp_path):
    path = tmp_path / "export.csv"
    cli("members", "export", tricky_roster, "--output", str(path))
    cli("lists", "create", OTHER, "--owner", "chair@example.org")

    result = cli("members", "import", OTHER, str(path))
    assert "skipped 0 rows" in result.stdout
    assert result.stderr == ""  # no progress bar off a terminal, nothing skipped

    def roster(ref: str) -> list[tuple[str, str, str, str]]:
        return [(r["email"], r["name"], r["delivery"], r["status"])
                for r in members_json(cli, ref)]

    assert roster(OTHER) == roster(tricky_roster)
    names = {r["email"]: r["name"] for r in members_json(cli, OTHER)}
    assert names == {**TRICKY_NAMES, "digest@example.org": ""}
    assert count(store, OutMessage) == 0


def test_export_keeps_the_delivery_mode(cli, shma, tmp_path):
    path = tmp_path / "modes.csv"
    path.write_text("email,delivery\na@example.org,digest\nb@example.org,NOMAIL\n"
                    "c@example.org,regular\nd@example.org,Digest-Plain\n")
    cli("members", "import", shma, str(path))
    rows = list(csv.reader(io.StringIO(cli("members", "export", shma).stdout)))
    assert rows == [["email", "name", "delivery"], ["a@example.org", "", "digest"],
                    ["b@example.org", "", "nomail"], ["c@example.org", "", "regular"],
                    ["d@example.org", "", "digest-plain"]]


def test_export_of_an_unknown_list_is_one_clear_error(cli, shma):
    result = cli("members", "export", "nosuch", ok=False)
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: no list named nosuch"


def test_export_of_an_empty_list_is_the_header_row(cli, shma, store):
    with store.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(Member)) == 0
    assert cli("members", "export", shma).stdout == "email,name,delivery\n"


# -- spreadsheets in other languages (issue 16 acceptance 6) ------------------------------------


def test_import_of_a_semicolon_csv_with_an_e_mail_header(cli, shma, tmp_path):
    """Excel's "CSV (semicolon-separated)" from a German or Spanish locale, CRLF line ends."""
    path = tmp_path / "mitglieder.csv"
    path.write_bytes("Name;E-mail;Notiz\r\n"
                     "Jürgen Müller;juergen@example.de;Vorstand, seit 2019\r\n"
                     "\"Smith, Ann\";ann@example.org;\r\n".encode("utf-8-sig"))
    result = cli("members", "import", shma, str(path))
    assert "imported 2 members" in result.stdout and result.stderr == ""
    assert [(r["email"], r["name"]) for r in members_json(cli, shma)] == [
        ("ann@example.org", "Smith, Ann"), ("juergen@example.de", "Jürgen Müller")]


@pytest.mark.parametrize(("header", "row", "name"), [
    ("email,name", "a@example.org,Ann", "Ann"),
    ("Email address\tFull name", "a@example.org\tAnn", "Ann"),
    ("e-mail address,Display Name", "a@example.org,Ann", "Ann"),
    ("Nombre;Apellidos;Correo electrónico", "Ana;García López;a@example.org",
     "Ana García López"),
    ("Correo;Nombre", "a@example.org;Ana", "Ana"),
    ("Prénom;Nom;Courriel", "Anne;Dupont;a@example.org", "Anne Dupont"),
    ("Nom;Adresse e-mail", "Anne Dupont;a@example.org", "Anne Dupont"),
    ("Vorname;Nachname;E-Mail-Adresse", "Anna;Schmidt;a@example.org", "Anna Schmidt"),
    ("Nome;Endereço de e-mail", "Ana Souza;a@example.org", "Ana Souza"),
    ("First Name,Last Name,E-mail Address,E-mail 2 Address", "Ann,Lee,a@example.org,x@y.org",
     "Ann Lee"),
])
def test_import_reads_the_header_spellings_of_spreadsheets(cli, shma, tmp_path, header, row,
                                                           name):
    path = tmp_path / "roster.csv"
    path.write_text(f"{header}\n{row}\n", encoding="utf-8")
    cli("members", "import", shma, str(path))
    assert [(r["email"], r["name"]) for r in members_json(cli, shma)] == [
        ("a@example.org", name)]


def test_import_names_bad_rows_by_their_line_in_a_semicolon_file(cli, shma, tmp_path):
    path = tmp_path / "socios.csv"
    path.write_bytes(
        b"Nombre;Correo\r\n"                    # 1
        b"\r\n"                                 # 2: blank
        b"\"Ana\r\nde la Cruz\";ana@example.org\r\n"  # 3-4: a name over two lines
        b"Bad;not-an-address\r\n"               # 5
        b"\"Notas\nlargas\nde verdad\";\r\n"    # 6-8: no address
        b"Eva;eva@example.org\r\n"              # 9
        b"Otra;ana@example.org\r\n")            # 10
    result = cli("members", "import", shma, str(path))
    assert skipped_lines(result.stderr) == [5, 6, 10]
    assert "line 10: ana@example.org is already on line 3" in result.stderr
    assert "imported 2 members" in result.stdout


def run_stderr(config_path: Path, *args: str, stderr_on_terminal: bool) -> str:
    """`listserv ARGS` in a subprocess, standard error on a terminal (a pty) or a pipe;
    returns what it wrote there."""
    command = [LISTSERV, "--config", str(config_path), *args]
    env = {**os.environ, "COLUMNS": "100"}
    if not stderr_on_terminal:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        return done.stderr
    leader, follower = pty.openpty()
    chunks: list[bytes] = []

    def read() -> None:  # drained as it comes, so the child never blocks on a full terminal
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child has closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=follower, timeout=60, env=env)
    os.close(follower)
    reader.join(30)
    os.close(leader)
    assert done.returncode == 0, b"".join(chunks)
    return b"".join(chunks).decode()


def test_import_and_export_show_progress_on_a_terminal_only(config_path, shma, tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text("email\n" + "".join(f"m{i:04d}@example.org\n" for i in range(2000)))
    on_terminal = run_stderr(config_path, "members", "import", LIST, str(path),
                             stderr_on_terminal=True)
    assert "importing" in on_terminal and "100%" in on_terminal
    assert on_terminal.count("\r") > 5  # redrawn as it goes
    other = tmp_path / "other.csv"
    other.write_text("email\nz@example.org\n")
    assert run_stderr(config_path, "members", "import", LIST, str(other),
                      stderr_on_terminal=False) == ""

    export = ("members", "export", LIST, "-o", str(tmp_path / "out.csv"))
    on_terminal = run_stderr(config_path, *export, stderr_on_terminal=True)
    assert "exporting" in on_terminal and "100%" in on_terminal
    assert run_stderr(config_path, *export, stderr_on_terminal=False) == ""
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 2002
