"""The one typed registry of list settings: parsers, typed values, `lists show --json`, docs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from listserv.store import list_settings
from listserv.store.list_settings import (
    ADDRESSES,
    BOOLEAN,
    ONE_LINE,
    Refused,
    choice,
    declare,
    durations,
    markdown_table,
    number,
    registered,
    whole,
)
from listserv.store.models.core import MailingList

from .helpers import LIST

ROOT = Path(__file__).resolve().parent.parent


# -- the shared parsers ------------------------------------------------------------------------


@pytest.mark.parametrize(("parser", "text", "value"), [
    (whole(0), " 12 ", 12),
    (whole(0, 10), "10", 10),
    (whole(1, unit="KB"), "1", 1),
    (number(0, above=True), "0.5", 0.5),
    (number(0), "0", 0.0),
    (number(0, 1), "1", 1.0),
    (choice("hold", "reject"), "Reject", "reject"),
    (BOOLEAN, "off", False),
    (BOOLEAN, "Yes", True),
    (ONE_LINE, "  The   Commons ", "The Commons"),
    (ADDRESSES, "b@Example.org a@example.org;b@example.org", ("b@example.org", "a@example.org")),
    (ADDRESSES, "none", ()),
    (durations(90, 10), "1d, 14d,2h,24h", ("14d", "1d", "2h")),
    (durations(90, 10), "", ()),
])
def test_a_parser_reads_the_chairs_text_into_a_typed_value(parser, text, value):
    assert parser(text) == value
    assert isinstance(parser(text), parser.kind)


@pytest.mark.parametrize(("parser", "text", "says"), [
    (whole(0), "-3", "'-3' is not a whole number, 0 or more"),
    (whole(0), "1.5", "'1.5' is not a whole number, 0 or more"),
    (whole(0, 10), "many", "'many' is not a whole number from 0 to 10"),
    (whole(1, unit="KB"), "0", "'0' is not a whole number of KB, 1 or more"),
    (number(0, above=True), "0", "'0' is not a number above 0"),
    (number(0, above=True), "inf", "'inf' is not a number above 0"),
    (number(0), "nan", "'nan' is not a number, 0 or more"),
    (number(0, 1), "2", "'2' is not a number from 0 to 1"),
    (choice("hold", "reject"), "bounce", "'bounce' is not one of hold, reject"),
    (BOOLEAN, "perhaps", "'perhaps' is not true or false"),
    (ONE_LINE, "two\nlines", "'two\\nlines' is not one line of text"),
    (ADDRESSES, "a@example.org, nobody", "'nobody' is not an email address"),
    (durations(90, 10), "soon", "'soon' is not a duration such as 14d"),
    (durations(90, 10), "91d", "'91d' is not a duration of more than 0 and at most 90 days"),
    (durations(90, 2), "1d,2d,3d", "3 items are too many (at most 2)"),
])
def test_a_parser_refuses_in_one_line_naming_the_text(parser, text, says):
    with pytest.raises(Refused) as refused:
        parser(text)
    assert str(refused.value).startswith(says)
    assert "\n" not in str(refused.value)


def test_a_key_is_declared_once():
    with pytest.raises(RuntimeError, match="bounce.threshold is declared twice"):
        declare("bounce.threshold", number(0), 1.0, "again")


def test_values_come_back_typed_and_old_text_values_still_read():
    keys = {s.key: s for s in registered()}
    ml = MailingList(name="shma", domain="lists.example.org", extra={
        "bounce.threshold": 2,                        # an int where a float is declared
        "bounce.warnings": "many",                    # damaged: the default is used
        "meetings.reminders": "14d,1h",               # comma-separated, as versions before wrote
        "column.editors": "ed@example.org, an@example.org",
        "column.deadlines": "",
    })
    assert keys["bounce.threshold"].get(ml) == 2.0
    assert isinstance(keys["bounce.threshold"].get(ml), float)
    assert keys["bounce.warnings"].get(ml) == 3
    assert keys["meetings.reminders"].get(ml) == ("14d", "1h")
    assert keys["column.editors"].get(ml) == ("ed@example.org", "an@example.org")
    assert keys["column.deadlines"].get(ml) == ()
    assert keys["meetings.peer_input_share"].get(ml) == 0.5   # not set: the default
    keys["column.editors"].set(ml, "x@example.org")
    assert ml.extra["column.editors"] == ["x@example.org"]    # stored as a JSON array now


# -- the chair's view ---------------------------------------------------------------------------


def test_lists_show_json_prints_every_setting_typed(cli, shma):
    cli("lists", "set", LIST, "column.editors", "ed@example.org;an@example.org")
    cli("lists", "set", LIST, "personalize", "off")
    cli("lists", "set", LIST, "bounce.threshold", "2.5")
    info = json.loads(cli("lists", "show", LIST, "--json").output)
    for setting in registered():
        assert setting.key in info
    assert info["max_post_kb"] == 1024 and info["held_expiry_days"] == 14
    assert info["personalize"] is False
    assert info["bounce.threshold"] == 2.5 and info["bounce.warnings"] == 3
    assert info["meetings.peer_input_share"] == 0.5
    assert info["meetings.reminders"] == ["14d", "1d"]
    assert info["column.editors"] == ["ed@example.org", "an@example.org"]
    assert info["column.types"][:2] == ["pdf", "docx"]
    assert info["footer"] is None
    text = cli("lists", "show", LIST).output
    assert "column.editors: ed@example.org, an@example.org" in text
    assert "personalize: False" in text


def test_lists_set_names_the_key_the_value_and_what_it_takes(cli, shma):
    result = cli("lists", "set", LIST, "column.call_days", "-1", ok=False)
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        "Error: column.call_days: '-1' is not a whole number of days from 0 to 365"]


# -- the docs ---------------------------------------------------------------------------------


def test_the_docs_table_is_the_registry():
    """docs/list-settings.md carries the table `markdown_table` makes from the registry."""
    table = markdown_table(registered())
    doc = (ROOT / "docs" / "list-settings.md").read_text()
    assert table in doc, f"docs/list-settings.md is out of date; its table is now:\n{table}"
    assert "docs/list-settings.md" in (ROOT / "config.example.toml").read_text()
    assert list_settings.find("no.such.key") is None
