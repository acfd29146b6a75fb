"""The chair's command line (`listserv`): parse, call a service in one unit of work, print."""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import select
import signal
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click
import jinja2
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from listserv.archive import search as archive_search
from listserv.archive import views as archive_views
from listserv.bounces.scoring import enable_member
from listserv.bounces.views import bounce_detail, bounce_rows
from listserv.chair import actions as services
from listserv.chair import decisions, housekeeping, privacy
from listserv.chair import forget as forgetting
from listserv.chair.roster_csv import read_roster
from listserv.chair.sent import sent_items
from listserv.clock import Clock, SystemClock
from listserv.column import desk
from listserv.column.export import export as export_submissions
from listserv.config import Settings, load_settings
from listserv.config.discovery import config_for_init, find_config
from listserv.daemon import Daemon, secure_data_folder
from listserv.delivery.outbox import audience
from listserv.digests.posts import DELIVERY_MODES
from listserv.errors import ListservError
from listserv.files import UMASK, open_private, private_folder, remove_paths
from listserv.mail import templates as mail_templates
from listserv.mail.message import parse
from listserv.mail.render import Renderer
from listserv.meetings import peer_input as peer_input
from listserv.meetings import reminders
from listserv.meetings.queries import find_meeting, meetings_of
from listserv.meetings.rules import every_rule
from listserv.meetings.series import (
    MAX_DURATION,
    create_series,
    current_series,
    first_start,
    schedule,
)
from listserv.meetings.show import meeting_dict
from listserv.meetings.times import parse_at, when
from listserv.membership import bans
from listserv.membership import subscriptions as membership
from listserv.operations.backup import take_backup
from listserv.operations.dkim_keys import keygen
from listserv.operations.doctor import doctor_lines, doctor_report, list_facts
from listserv.operations.logs import FORMATS, configure_logging
from listserv.operations.postfix import list_addresses, postfix_config
from listserv.operations.restore import restore_backup
from listserv.operations.service import listserv_executable, systemd_unit
from listserv.operations.status import status_lines, status_report
from listserv.operations.upgrade import upgrade
from listserv.posting.distribute import arc_authserv
from listserv.store.engine import Store
from listserv.web.links import public_url


class App:
    """What every command needs, made on first use: settings, store, renderer, clock."""

    def __init__(self, config: str | None, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self._config_path: Path | None = None
        self._settings: Settings | None = None
        self._store: Store | None = None

    @property
    def config_path(self) -> Path:
        """The config file: --config, $LISTSERV_CONFIG, ./listserv.toml or a parent's, ~/.config."""
        if self._config_path is None:
            self._config_path = find_config(self.config, Path.cwd(), os.environ).path
        return self._config_path

    def use_config(self, path: Path) -> None:
        """Use this config file (the one `init` wrote or chose) instead of looking for one."""
        self._config_path = path

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings.database.url)
        return self._store

    @property
    def renderer(self) -> Renderer:
        return Renderer(self.settings.templates_dir, self.settings.outbound.eightbitmime,
                        web_url=public_url(self.settings))

    @property
    def actor(self) -> str:
        try:
            return f"chair ({getpass.getuser()})"
        except (KeyError, OSError):
            return "chair"

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """A unit of work that may write."""
        with _database_errors(), self.store.unit_of_work() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A unit of work that only reads: on SQLite it does not wait for a writer."""
        with _database_errors(), self.store.reading() as session:
            yield session

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()


@contextmanager
def _database_errors() -> Iterator[None]:
    """A database error as one line for the chair."""
    try:
        yield
    except SQLAlchemyError as exc:
        if "no such table" in str(exc) or "does not exist" in str(exc):
            raise ListservError(
                "the database is not set up yet; run `listserv init` first") from None
        detail = getattr(exc, "orig", None) or exc
        first_line = str(detail).strip().splitlines()[0] if str(detail).strip() else ""
        raise ListservError(f"database error: {first_line or type(exc).__name__}") from None


class ChairGroup(click.Group):
    """Turns errors into one line on stderr and a non-zero exit; never a traceback.

    Our own errors say what is wrong; a system error (OSError) says what failed and on which
    file; output into a pipe whose reader has gone stops quietly with status 141; anything
    else is a bug, reported in one line too (set LISTSERV_DEBUG=1 for the traceback).
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
            # Written now, not at exit: a reader that has gone shows here, as below.
            sys.stdout.flush()
            return result
        except ListservError as exc:
            raise click.ClickException(str(exc)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError as exc:
            if not _stdout_closed():
                raise click.ClickException(_os_error_line(exc)) from None
            # `listserv members list | head`: the reader has what it wanted. Quiet, and the
            # exit status of a program stopped by SIGPIPE (128 + 13), as `cat` would give.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(128 + signal.SIGPIPE) from None
        except OSError as exc:
            raise click.ClickException(_os_error_line(exc)) from None
        except Exception as exc:
            if os.environ.get("LISTSERV_DEBUG"):
                raise
            message = " ".join(str(exc).split()) or "no details"
            raise click.ClickException(
                f"unexpected error ({type(exc).__name__}: {message}); "
                "run with LISTSERV_DEBUG=1 for details") from None


def _stdout_closed() -> bool:
    """Whether whoever read standard output has gone (a pipe's reader closed it)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False  # not a file (under a test's CliRunner)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)  # a pipe without a reader reports POLLERR
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _os_error_line(exc: OSError) -> str:
    """An OSError as the chair reads it: what failed, and on which file if there is one."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{exc.filename}: {reason}" if exc.filename else reason


def emit(rows: Sequence[dict[str, Any]] | dict[str, Any], as_json: bool,
         columns: Sequence[str] = ()) -> None:
    """Print a listing: JSON (an array, or one object) or aligned text columns."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
        return
    if isinstance(rows, dict):
        for key, value in rows.items():
            if isinstance(value, dict):
                click.echo(f"{key}:")
                for sub_key, sub_value in value.items():
                    click.echo(f"  {sub_key}: {_text_value(sub_value)}")
            else:
                click.echo(f"{key}: {_text_value(value)}".rstrip())
        return
    if not rows:
        click.echo("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        click.echo("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns).rstrip())


def emit_json_array(rows: Iterable[dict[str, Any]], chunk: int = 1000) -> None:
    """Print `rows` as `emit` prints a JSON array, a chunk of rows at a time as they come."""
    pending: list[str] = []
    first = True
    for row in rows:
        pending.append(("[\n" if first else ",\n") + _json_item(row))
        first = False
        if len(pending) >= chunk:
            click.echo("".join(pending), nl=False)
            pending.clear()
    click.echo("".join(pending) + ("[]" if first else "\n]"))


def _json_item(row: dict[str, Any]) -> str:
    """`row` as `json.dumps(rows, indent=2)` writes an item of an array, but built from its
    values' encodings: the indenting encoder is pure Python, 10x slower on 100,000 rows."""
    fields = []
    for key, value in row.items():
        text = (_JSON.encode(value) if not isinstance(value, dict | list | tuple) else
                textwrap.indent(json.dumps(value, indent=2, ensure_ascii=False, default=str),
                                "    ").lstrip())
        fields.append(f"    {_JSON.encode(str(key))}: {text}")
    return "  {\n" + ",\n".join(fields) + "\n  }" if fields else "  {}"


#: Encodes one value as `emit` does (UTF-8 as is, anything else by its text).
_JSON = json.JSONEncoder(ensure_ascii=False, default=str)


def _text_value(value: Any) -> str:
    if value is None:
        return "(default)"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


@contextmanager
def progress(length: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on standard error while it is a terminal; silent otherwise, so that a
    script's output and logs stay clean. Yields the function that counts steps done."""
    with click.progressbar(length=length, label=label, file=sys.stderr,
                           hidden=not sys.stderr.isatty(),
                           update_min_steps=max(1, length // 200)) as bar:
        yield bar.update


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
yes_option = click.option("--yes", "-y", "yes", is_flag=True,
                          help="Do not ask; needed where there is no terminal to ask on.")


def ask(question: str, yes: bool) -> None:
    """Go on only if the chair said yes: `--yes`, or `y` at the prompt on a terminal.

    Without a terminal (a script, cron) there is nobody to ask, so it refuses (SPEC §4).
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise ListservError(f"{question.rstrip('?')}: not done; no terminal to ask on "
                            "(add --yes to go ahead)")
    if not click.confirm(question, default=False, err=True):
        raise ListservError("not done")


pass_app = click.make_pass_decorator(App)


@click.group(cls=ChairGroup)
@click.option("--config", metavar="PATH",
              help="The config file. Default: $LISTSERV_CONFIG, else listserv.toml in this "
                   "folder or the nearest parent with one, else "
                   "~/.config/listserv/listserv.toml.")
@click.version_option(package_name="listserv", prog_name="listserv",
                      message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """listserv: run mailing lists by email, moderate from here."""
    # Everything the daemon and the commands create is private (SPEC §7); put back on close,
    # for a program (a test) that calls main() and goes on.
    umask = os.umask(UMASK)
    ctx.call_on_close(lambda: os.umask(umask))
    # A caller may hand in the clock as the context object, `main(obj=clock)`: tests run the
    # CLI and daemons in subprocesses "days later" that way (tests/fake_clock_cli.py).
    app = App(config, clock=ctx.obj)
    ctx.obj = app
    ctx.call_on_close(app.close)


@main.command()
@click.option("--force", is_flag=True,
              help="Set up in this folder even though a config is found above it or in "
                   "~/.config/listserv.")
@pass_app
def init(app: App, force: bool) -> None:
    """Create the data folder and database, or upgrade them (safe to run again).

    Without a config to use, writes listserv.toml in this folder: every command run here or
    below then finds it.
    """
    path, wrote = config_for_init(app.config, Path.cwd(), os.environ, force=force)
    app.use_config(path)
    if wrote:
        click.echo(f"wrote {path}")
    settings = app.settings
    tightened = secure_data_folder(settings)
    if tightened:
        click.echo(tightened)
    private_folder(settings.outbox_dir)
    schema = upgrade(app.store)
    click.echo(f"listserv is ready in {settings.data_dir} (database: {app.store.safe_url})")
    click.echo(schema)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def backup(app: App, file: Path) -> None:
    """Write a backup of the store and the data folder's files to FILE (.tar.gz, 0600).

    Safe while the daemon runs: the database is copied in one consistent snapshot.
    """
    with _database_errors():
        manifest = take_backup(app.settings, app.store, file)
    rows = sum(manifest.counts.values())
    click.echo(f"wrote {file}: {manifest.backend} store at schema {manifest.schema_revision}, "
               f"{rows} rows, {len(manifest.files)} files")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def restore(app: App, file: Path) -> None:
    """Restore the backup FILE into an empty data folder and database, then migrate forward.

    Refuses a damaged or incomplete backup, and a data folder or database that is not empty.
    """
    settings = app.settings
    with _database_errors():
        manifest = restore_backup(settings, file)
    click.echo(f"restored {file} (taken {manifest.created}, schema "
               f"{manifest.schema_revision}) into {settings.data_dir}")


@main.command()
@click.option("-v", "--verbose", is_flag=True, help="Log debugging detail.")
@click.option("--log-format", type=click.Choice(FORMATS), default="text", show_default=True,
              help="The log on standard error, one line per record: text (journald-friendly) "
                   "or json (one object per line, for log shippers).")
@pass_app
def serve(app: App, verbose: bool, log_format: str) -> None:
    """Run the daemon: intake, delivery and scheduler, until SIGTERM or Ctrl-C."""
    configure_logging(log_format, verbose)
    Daemon(app.settings, clock=app.clock).run()


# -- lists -----------------------------------------------------------------------------------


@main.group()
def lists() -> None:
    """Create, show and change lists."""


@lists.command("create")
@click.argument("address")
@click.option("--owner", "owners", multiple=True, required=True, metavar="EMAIL",
              help="An owner (chair); repeat for several.")
@pass_app
def lists_create(app: App, address: str, owners: tuple[str, ...]) -> None:
    """Create the list NAME@DOMAIN."""
    with app.unit_of_work() as session:
        ml = services.create_list(session, address, owners, app.clock.now(), app.actor)
        click.echo(f"created {ml.address}")


@lists.command("list")
@json_option
@pass_app
def lists_list(app: App, as_json: bool) -> None:
    """All lists."""
    with app.reading() as session:
        rows = services.all_lists(session)
    emit(rows, as_json, ("id", "list", "owners", "description"))


@lists.command("show")
@click.argument("list_ref", metavar="LIST")
@json_option
@pass_app
def lists_show(app: App, list_ref: str, as_json: bool) -> None:
    """A list's settings and addresses."""
    with app.reading() as session:
        emit(services.list_info(services.find_list(session, list_ref)), as_json)


@lists.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("list_ref", metavar="LIST")
@click.argument("key")
@click.argument("value", required=False)
@click.option("--default", "to_default", is_flag=True, help="Bring back the built-in default.")
@pass_app
def lists_set(app: App, list_ref: str, key: str, value: str | None, to_default: bool) -> None:
    """Change a list setting (see `lists show`), e.g. `lists set shma reply_to list`.

    `owners` and `moderators` take comma-separated addresses (`lists set shma owners a@x,b@y`).
    """
    if (value is None) != to_default:
        raise click.UsageError("give either a VALUE or --default")
    with app.unit_of_work() as session:
        ml = services.find_list(session, list_ref)
        housekeeping.set_setting(session, ml, key, value, app.clock.now(), app.actor)
        click.echo(f"{ml.address}: {key} " + ("back to its default" if to_default else "set"))


@lists.command("delete")
@click.argument("list_ref", metavar="LIST")
@yes_option
@pass_app
def lists_delete(app: App, list_ref: str, yes: bool) -> None:
    """Delete a list with its members, held mail, requests and meetings (asks first)."""
    with app.reading() as session:
        ml = services.find_list(session, list_ref)
        address, count = ml.address, housekeeping.member_count(session, ml)
    ask(f"Delete {address} and its {count} members for good?", yes)
    with app.unit_of_work() as session:
        _, folders = housekeeping.delete_list(session, services.find_list(session, address),
                                              app.clock.now(), app.actor,
                                              app.settings.data_dir)
    remove_paths(folders)
    click.echo(f"deleted {address}")


# -- members ---------------------------------------------------------------------------------


@main.group()
def members() -> None:
    """The roster."""


@members.command("list")
@click.argument("list_ref", metavar="LIST")
@json_option
@pass_app
def members_list(app: App, list_ref: str, as_json: bool) -> None:
    """Members of a list."""
    with app.reading() as session:
        ml = services.find_list(session, list_ref)
        rows = services.member_dicts(session, ml)
        if as_json:  # streamed: a roster of 100,000 is never in memory at once (issue 15)
            emit_json_array(rows)
            return
        emit(list(rows), as_json, ("email", "name", "delivery", "status"))


@members.command("add")
@click.argument("list_ref", metavar="LIST")
@click.argument("email")
@click.option("--name", default="", help="The member's name.")
@click.option("--no-welcome", is_flag=True, help="Do not send the welcome mail.")
@pass_app
def members_add(app: App, list_ref: str, email: str, name: str, no_welcome: bool) -> None:
    """Subscribe EMAIL directly (no confirmation); welcomes them unless --no-welcome."""
    with app.unit_of_work() as session:
        ml = services.find_list(session, list_ref)
        member = services.add_member(session, app.renderer, ml, email, name, app.clock.now(),
                                     app.actor, welcome=not no_welcome)
        click.echo(f"added {member.email} to {ml.address}")


@members.command("remove")
@click.argument("list_ref", metavar="LIST")
@click.argument("email")
@click.option("--forget", is_flag=True,
              help="Also erase everything stored about the person, on every list.")
@json_option
@pass_app
def members_remove(app: App, list_ref: str, email: str, forget: bool, as_json: bool) -> None:
    """Unsubscribe EMAIL (their open confirmation and undo tokens are revoked).

    With --forget, everything naming them goes (docs/privacy.md); it prints what was removed
    and what was kept, and why.
    """
    if not forget:
        with app.unit_of_work() as session:
            ml = services.find_list(session, list_ref)
            services.remove_member(session, ml, email, app.clock.now(), app.actor)
            click.echo(f"removed {email} from {ml.address}")
        return
    with app.reading() as session:
        ahead = forgetting.scan_ahead(session, email)
    with app.unit_of_work() as session:
        ml = services.find_list(session, list_ref)
        done = forgetting.forget(session, app.settings.data_dir, app.settings.outbox_dir, email,
                                 ml.id, app.clock.now(), app.actor, ahead)
    forgetting.erase_files(done)
    scrubbed = forgetting.scrub(app.store)
    if as_json:
        emit(done.as_dict(), True)
        return
    click.echo(f"removed {done.email} from {ml.address} and forgot them; the log names them "
               f"{done.pseudonym} ({done.log_entries} entries)")
    click.echo("removed:" if done.removed or done.files_removed else "removed: nothing stored")
    for what, count in done.removed.items():
        click.echo(f"  {what}: {count}")
    for path in done.files_removed:
        click.echo(f"  file: {path}")
    click.echo("kept:" if done.kept else "kept: nothing")
    for kept in done.kept:
        click.echo(f"  {kept.what}: {kept.why}")
        for where in (*kept.rows, *kept.files):
            click.echo(f"    {where}")
    if not scrubbed:
        click.echo("note: the database's write-ahead log was in use; its old pages go at the "
                   "daemon's next checkpoint")


@members.command("data")
@click.argument("email")
@pass_app
def members_data(app: App, email: str) -> None:
    """Every record naming EMAIL, on every list, as JSON (a person's request for their data)."""
    with app.reading() as session:
        data = privacy.person_data(session, app.settings.data_dir, app.settings.outbox_dir,
                                   email)
    emit(data, True)


@members.command("enable")
@click.argument("list_ref", metavar="LIST")
@click.argument("email")
@pass_app
def members_enable(app: App, list_ref: str, email: str) -> None:
    """Turn delivery back on for a member disabled by bounces (score and notices cleared)."""
    with app.unit_of_work() as session:
        ml = services.find_list(session, list_ref)
        member = enable_member(session, ml, email, app.clock.now(), app.actor)
        click.echo(f"enabled delivery to {member.email} on {ml.address}")


@members.command("set")
@click.argument("list_ref", metavar="LIST")
@click.argument("email")
@click.option("--name", default=None, help="The member's name.")
@click.option("--delivery", default=None, type=click.Choice(DELIVERY_MODES),
              help="How the member gets the list's mail.")
@click.option("--language", default=None, metavar="xx",
              help='The member\'s language (en, es, fr, de, pt; "" = the list\'s).')
@pass_app
def members_set(app: App, list_ref: str, email: str, name: str | None, delivery: str | None,
                language: str | None) -> None:
    """Change a member's name, delivery or language; nobody is told (a digest member set to
    regular gets her last digest)."""
    with app.unit_of_work() as session:
        ml = services.find_list(session, list_ref)
        member = housekeeping.set_member(session, app.renderer, ml, email, app.clock.now(),
                                         app.actor, name=name, delivery=delivery,
                                         language=language)
        click.echo(f"changed {member.email} on {ml.address}")


@members.command("ban")
@click.argument("list_ref", metavar="LIST")
@click.argument("pattern")
@pass_app
def members_ban(app: App, list_ref: str, pattern: str) -> None:
    """Ban senders: an address, `*@domain`, or a regular expression starting with `^`.

    Their posts and requests to the list are discarded (and logged); they cannot be added.
    Members already subscribed stay until removed.
    """
    with app.unit_of_work() as session:
        ml = services.find_list(session, list_ref)
        stored = bans.ban(session, ml, pattern, app.clock.now(), app.actor)
        click.echo(f"banned {stored} on {ml.address}")


@members.command("unban")
@click.argument("list_ref", metavar="LIST")
@click.argument("pattern")
@pass_app
def members_unban(app: App, list_ref: str, pattern: str) -> None:
    """Lift a ban (the pattern as `members bans` shows it)."""
    with app.unit_of_work() as session:
        ml = services.find_list(session, list_ref)
        stored = bans.unban(session, ml, pattern, app.clock.now(), app.actor)
        click.echo(f"unbanned {stored} on {ml.address}")


@members.command("bans")
@click.argument("list_ref", metavar="LIST")
@json_option
@pass_app
def members_bans(app: App, list_ref: str, as_json: bool) -> None:
    """The list's banned senders."""
    with app.reading() as session:
        rows = bans.ban_rows(session, services.find_list(session, list_ref))
    emit(rows, as_json, ("pattern", "since", "by"))


@members.command("import")
@click.argument("list_ref", metavar="LIST")
@click.argument("csv_file", type=click.File("r", encoding="utf-8-sig"))
@pass_app
def members_import(app: App, list_ref: str, csv_file: io.TextIOWrapper) -> None:
    """Add members from a CSV file with a header row naming `email` (and `name`, `delivery`).

    Commas, semicolons or tabs; headers as spreadsheets write them (E-mail, Email address,
    Correo, Courriel, First name/Last name ...). Nobody is mailed. Bad rows are skipped and
    named by their line in the file; the rest are imported.
    """
    rows = read_roster(csv_file, csv_file.name)
    with app.unit_of_work() as session:
        ml = services.find_list(session, list_ref)
        with progress(len(rows), "importing") as step:
            result = services.import_members(session, ml, rows, app.clock.now(), app.actor,
                                             progress=step)
    for problem in result.skipped:
        click.echo(f"skipped {problem}", err=True)
    click.echo(f"imported {result.added} members into {ml.address}; "
               f"skipped {len(result.skipped)} rows")


@members.command("export")
@click.argument("list_ref", metavar="LIST")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default="-",
              help="Write here (a private file, 0600) instead of standard output.")
@pass_app
def members_export(app: App, list_ref: str, output: Path) -> None:
    """Write the roster as CSV (email, name, delivery), spreadsheet-safe."""
    with app.reading() as session:
        ml = services.find_list(session, list_ref)
        with progress(services.member_count(session, ml), "exporting") as step:
            rows = []
            for m in services.iter_members(session, ml):
                rows.append([services.csv_cell(m.email), services.csv_cell(m.name), m.delivery,
                             m.language])
                step(1)
    with _output(output) as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["email", "name", "delivery", "language"])
        writer.writerows(rows)


@contextmanager
def _output(path: Path) -> Iterator[IO[str]]:
    """Standard output for "-", else the file, created (or truncated) 0600."""
    if str(path) == "-":
        yield sys.stdout
        return
    try:
        handle = open_private(path, "w")
    except OSError as exc:
        raise ListservError(f"cannot write {path}: {exc.strerror or exc}") from None
    with handle:
        yield handle


# -- held messages ---------------------------------------------------------------------------


@main.group()
def held() -> None:
    """The moderation queue."""


@held.command("list")
@click.argument("list_ref", metavar="[LIST]", required=False)
@json_option
@pass_app
def held_list(app: App, list_ref: str | None, as_json: bool) -> None:
    """Messages waiting for a decision."""
    with app.reading() as session:
        ml = services.find_list(session, list_ref) if list_ref else None
        rows = [services.held_dict(h) for h in services.waiting_held(session, ml)]
    emit(rows, as_json, ("id", "list", "sender", "subject", "reason"))


@held.command("show")
@click.argument("held_id", metavar="ID")
@json_option
@pass_app
def held_show(app: App, held_id: str, as_json: bool) -> None:
    """One held message, with its text."""
    with app.reading() as session:
        item = services.find_held(session, held_id, waiting=False)
        info = services.held_dict(item)
        msg = parse(item.inbound.raw)
        body = msg.get_body(preferencelist=("plain", "html"))
        info["text"] = body.get_content() if body is not None else ""
    if as_json:
        emit(info, True)
        return
    text = info.pop("text")
    emit(info, False)
    click.echo("")
    click.echo(text)


held_ids = click.argument("held_ids", metavar="ID...", nargs=-1)
all_option = click.option("--all", "everything", is_flag=True,
                          help="Every item waiting (of --list, if given).")
scope_option = click.option("--list", "list_ref", default=None, metavar="LIST",
                            help="With --all: only this list's.")


def each(ids: Sequence[str], act: Callable[[str], str]) -> None:
    """Decide on each id in its own unit of work, printing what was done; the ids that could
    not be decided are named on stderr and make the exit non-zero (the others stand)."""
    if len(ids) == 1:
        click.echo(act(ids[0]))  # one id: its error is the one line
        return
    failed = 0
    for item_id in ids:
        try:
            click.echo(act(item_id))
        except ListservError as exc:
            failed += 1
            click.echo(f"{item_id}: {exc}", err=True)
    if failed:
        raise ListservError(f"{failed} of {len(ids)} not done (see above)")


def _usage(ids: Sequence[str], everything: bool) -> None:
    if bool(ids) == everything:
        raise click.UsageError("give one or more IDs, or --all (not both)")


def _waiting_held(app: App, ids: Sequence[str], everything: bool,
                  list_ref: str | None) -> list[str]:
    _usage(ids, everything)
    with app.reading() as session:
        ml = services.find_list(session, list_ref) if list_ref else None
        waiting = [str(h.id) for h in services.waiting_held(session, ml)] if everything else []
    return housekeeping.chosen(ids, everything, waiting, "held message")


@held.command("approve")
@held_ids
@all_option
@scope_option
@click.option("--add-member", is_flag=True, help="Also subscribe the sender.")
@pass_app
def held_approve(app: App, held_ids: tuple[str, ...], everything: bool, list_ref: str | None,
                 add_member: bool) -> None:
    """Distribute held messages."""
    def approve(held_id: str) -> str:
        with app.reading() as session:
            raw = services.find_held(session, held_id).inbound.raw
        services.before_approving(raw)  # a DNS lookup, outside the write transaction
        with app.unit_of_work() as session:
            item = services.find_held(session, held_id)
            count = services.approve_held(session, app.renderer, item, app.clock.now(),
                                          app.actor, add_member_too=add_member,
                                          hosted=app.settings.hosted,
                                          trusted_authserv_id=arc_authserv(
                                              app.settings, item.mailing_list))
        return f"approved {held_id}: queued for {count} members"

    each(_waiting_held(app, held_ids, everything, list_ref), approve)


@held.command("reject")
@held_ids
@all_option
@scope_option
@click.option("--reason", default="", help="Told to the sender.")
@pass_app
def held_reject(app: App, held_ids: tuple[str, ...], everything: bool, list_ref: str | None,
                reason: str) -> None:
    """Refuse held messages; each sender is told why."""
    def reject(held_id: str) -> str:
        with app.unit_of_work() as session:
            item = services.find_held(session, held_id)
            services.reject_held(session, app.renderer, item, app.clock.now(), app.actor,
                                 reason)
        return f"rejected {held_id}"

    each(_waiting_held(app, held_ids, everything, list_ref), reject)


@held.command("discard")
@held_ids
@click.option("--as", "read_as", type=click.Choice(decisions.READ_AS),
              help="A post that is really a join or a leave: its sender is asked to confirm "
                   "that instead.")
@all_option
@scope_option
@pass_app
def held_discard(app: App, held_ids: tuple[str, ...], read_as: str | None, everything: bool,
                 list_ref: str | None) -> None:
    """Drop held messages without telling anyone (with --as, ask each sender to confirm the
    join or leave the message really is)."""
    def discard(held_id: str) -> str:
        with app.unit_of_work() as session:
            item = services.find_held(session, held_id)
            if read_as is not None:
                return decisions.read_held_as_request(session, app.renderer, item, read_as,
                                                      app.clock.now(), app.actor)
            services.discard_held(session, item, app.clock.now(), app.actor)
        return f"discarded {held_id}"

    if read_as is not None and everything:
        raise click.UsageError("--as reads each message you name; it does not go with --all")

    each(_waiting_held(app, held_ids, everything, list_ref), discard)


# -- requests --------------------------------------------------------------------------------


@main.group()
def requests() -> None:
    """Subscriptions waiting for you or for their confirmation, and unclear requests."""


@requests.command("list")
@click.argument("list_ref", metavar="[LIST]", required=False)
@json_option
@pass_app
def requests_list(app: App, list_ref: str | None, as_json: bool) -> None:
    """Open requests, oldest first."""
    with app.reading() as session:
        ml = services.find_list(session, list_ref) if list_ref else None
        rows = [services.request_dict(r) for r in services.open_requests(session, ml)]
    emit(rows, as_json, ("id", "list", "email", "kind", "status", "subject"))


def _waiting_requests(app: App, ids: Sequence[str], everything: bool,
                      list_ref: str | None) -> list[str]:
    _usage(ids, everything)
    with app.reading() as session:
        ml = services.find_list(session, list_ref) if list_ref else None
        waiting = [str(r.id) for r in services.open_requests(session, ml)
                   if r.status == "waiting"] if everything else []
    return housekeeping.chosen(ids, everything, waiting, "request")


@requests.command("approve")
@click.argument("request_ids", metavar="ID...", nargs=-1)
@click.option("--as", "read_as", type=click.Choice(decisions.READ_AS),
              help="For a request we could not read: what it asks (a confirmation goes to "
                   "the requester).")
@all_option
@scope_option
@pass_app
def requests_approve(app: App, request_ids: tuple[str, ...], read_as: str | None,
                     everything: bool, list_ref: str | None) -> None:
    """Approve confirmed subscriptions: each person becomes a member and is welcomed.

    An unclear request needs --as: the requester is sent a confirmation, as if they had asked
    clearly (nobody joins or leaves without confirming)."""
    def approve(request_id: str) -> str:
        with app.unit_of_work() as session:
            request = services.find_membership_request(session, request_id)
            if read_as is not None or request.kind == "unclear":
                if read_as is None:
                    raise ListservError(f"request {request_id} could not be read: say what "
                                        "it asks with --as subscribe or --as unsubscribe")
                return decisions.answer_unclear(session, app.renderer, request, read_as,
                                                app.clock.now(), app.actor)
            return membership.approve(session, app.renderer, request, app.clock.now(),
                                      app.actor)

    each(_waiting_requests(app, request_ids, everything, list_ref), approve)


@requests.command("ignore")
@click.argument("request_id", metavar="ID")
@pass_app
def requests_ignore(app: App, request_id: str) -> None:
    """Close a request we could not read, without mail."""
    with app.unit_of_work() as session:
        request = services.find_membership_request(session, request_id)
        click.echo(decisions.answer_unclear(session, app.renderer, request, "ignore",
                                            app.clock.now(), app.actor))


@requests.command("deny")
@click.argument("request_ids", metavar="ID...", nargs=-1)
@all_option
@scope_option
@click.option("--reason", default="", help="Told to the person.")
@pass_app
def requests_deny(app: App, request_ids: tuple[str, ...], everything: bool,
                  list_ref: str | None, reason: str) -> None:
    """Refuse waiting requests; each person is told (with the reason, if given)."""
    def deny(request_id: str) -> str:
        with app.unit_of_work() as session:
            request = services.find_membership_request(session, request_id)
            membership.deny(session, app.renderer, request, app.clock.now(), app.actor,
                            reason)
        return f"denied {request_id}"

    each(_waiting_requests(app, request_ids, everything, list_ref), deny)


# -- meetings and peer input (SPEC §5) -------------------------------------------------------

at_option = click.option("--at", "at", required=True, metavar='"YYYY-MM-DD HH:MM"',
                         help="The local start time in the zone of --tz.")
duration_option = click.option("--duration", type=click.IntRange(1, MAX_DURATION),
                               required=True, metavar="MIN", help="Minutes.")
dial_in_option = click.option("--dial-in", default="", metavar="TEXT",
                              help="How to join by phone (\\n for a new line).")


@main.group("meetings")
def meetings_group() -> None:
    """Meetings: a recurring series and one-offs, reminders with calendar invites."""


@meetings_group.command("schedule")
@click.argument("list_ref", metavar="LIST")
@at_option
@click.option("--tz", required=True, metavar="ZONE", help="IANA zone, e.g. America/Chicago.")
@duration_option
@dial_in_option
@json_option
@pass_app
def meetings_schedule(app: App, list_ref: str, at: str, tz: str, duration: int, dial_in: str,
                      as_json: bool) -> None:
    """Schedule a one-off meeting; prints its id."""
    with app.unit_of_work() as session:
        ml = services.find_list(session, list_ref)
        now = app.clock.now()
        meeting = schedule(session, app.renderer, ml, parse_at(at, tz), duration, dial_in, now,
                           app.actor)
        info = meeting_dict(session, meeting, now)
    if as_json:
        emit(info, True)
    else:
        click.echo(info["id"])


@meetings_group.command("series")
@click.argument("list_ref", metavar="LIST")
@click.option("--rrule", "rule", default=None, metavar="RULE",
              help="RFC 5545, e.g. FREQ=MONTHLY;BYMONTH=1,4,7,10;BYDAY=3TH")
@click.option("--every", default=None, metavar='"third thursday"',
              help='In words instead of --rrule: "third thursday", "last friday", "tuesday".')
@click.option("--months", default=None, metavar="2,5,8,11", help="With --every: only these.")
@click.option("--at", "at", required=True, metavar='HH:MM | "YYYY-MM-DD HH:MM"',
              help="The local time in --tz; with a date, the first meeting (on the rule).")
@click.option("--tz", required=True, metavar="ZONE", help="IANA zone, e.g. America/Chicago.")
@click.option("--duration", type=click.IntRange(1, MAX_DURATION), default=None, metavar="MIN",
              help="Minutes (default: the replaced series').")
@click.option("--dial-in", default=None, metavar="TEXT",
              help="How to join by phone (\\n for a new line; default: the replaced series').")
@click.option("--replace", is_flag=True, help="End the list's current series first: its "
              "meetings never announced are removed without mail.")
@json_option
@pass_app
def meetings_series(app: App, list_ref: str, rule: str | None, every: str | None,
                    months: str | None, at: str, tz: str, duration: int | None,
                    dial_in: str | None, replace: bool, as_json: bool) -> None:
    """Set the list's recurring series; kept two meetings ahead."""
    if (rule is None) == (every is None) or (months and not every):
        raise click.UsageError("give --rrule RULE, or --every WORDS [--months M,M]")
    changes: list[str] = []
    with app.unit_of_work() as session:
        ml = services.find_list(session, list_ref)
        now = app.clock.now()
        rule = rule or every_rule(every or "", months)
        old = current_series(session, ml) if replace else None
        if duration is None and old is None:
            raise click.UsageError("give --duration MIN")
        series, made = create_series(
            session, app.renderer, ml, rule, first_start(rule, at, tz, now),
            duration or (old.duration if old else 0),
            dial_in if dial_in is not None else (old.dial_in if old else ""), now, app.actor,
            replace=replace, changes=changes)
        rows = [meeting_dict(session, m, now) for m in made]
    if as_json:
        emit({"id": str(series.id), "list": ml.address, "rrule": series.rrule,
              "changes": changes, "meetings": rows}, True)
        return
    click.echo(f"series {series.id} for {ml.address}: {series.rrule}")
    for line in changes:
        click.echo(line)
    for row in rows:
        click.echo(f"scheduled meeting {row['id']} at {row['start']} ({row['tz']})")


@meetings_group.command("list")
@click.argument("list_ref", metavar="[LIST]", required=False)
@click.option("--all", "everything", is_flag=True, help="Include meetings that are over.")
@json_option
@pass_app
def meetings_list(app: App, list_ref: str | None, everything: bool, as_json: bool) -> None:
    """Meetings not yet over, soonest first."""
    with app.reading() as session:
        ml = services.find_list(session, list_ref) if list_ref else None
        now = app.clock.now()
        rows = [meeting_dict(session, m, now)
                for m in meetings_of(session, ml, now, everything=everything)]
    if not as_json:
        for row in rows:
            row["slots"] = len(row["agenda"])
    emit(rows, as_json, ("id", "list", "start", "tz", "duration", "status", "slots"))


@meetings_group.command("show")
@click.argument("meeting_id", metavar="ID")
@json_option
@pass_app
def meetings_show(app: App, meeting_id: str, as_json: bool) -> None:
    """One meeting: details, agenda, reminders."""
    with app.reading() as session:
        info = meeting_dict(session, find_meeting(session, meeting_id), app.clock.now())
    if as_json:
        emit(info, True)
        return
    lists_of = {k: info.pop(k) for k in ("agenda", "provisional", "reminders")}
    emit(info, False)
    for key, title in (("agenda", "agenda (approved)"), ("provisional", "provisional")):
        click.echo(f"{title}:")
        for slot in lists_of[key] or [{"id": "", "requester": "(none)", "project": "",
                                      "minutes": ""}]:
            click.echo(f"  {slot['id']:>4}  {slot['requester']}  {slot['project']}  "
                       f"{slot['minutes']}".rstrip())
    click.echo("reminders:")
    for item in lists_of["reminders"]:
        click.echo(f"  {item['offset']:>4}  due {item['due']}  {item['status']}  "
                   f"{item['detail']}".rstrip())


quiet_option = click.option("--quiet", is_flag=True, help="Change it without mailing anyone "
                            "on the list (e.g. a meeting never announced).")


def ask_to_mail_members(app: App, meeting_id: str, what: str, yes: bool) -> None:
    """Say how many members the command mails and ask first (SPEC §4 "care with mass mail")."""
    with app.reading() as session:
        ml = find_meeting(session, meeting_id).mailing_list
        count, address = audience(session, ml), ml.address
    if count:
        ask(f"This mails {what} to {count} members of {address}. Go ahead?", yes)


@meetings_group.command("move")
@click.argument("meeting_id", metavar="ID")
@at_option
@click.option("--tz", default=None, metavar="ZONE", help="Default: the meeting's own zone.")
@quiet_option
@yes_option
@pass_app
def meetings_move(app: App, meeting_id: str, at: str, tz: str | None, quiet: bool,
                  yes: bool) -> None:
    """Move a meeting; the members get an update (its SEQUENCE rises), unless --quiet."""
    if not quiet:
        ask_to_mail_members(app, meeting_id, "an update", yes)
    with app.unit_of_work() as session:
        meeting = find_meeting(session, meeting_id)
        count = reminders.move(session, app.renderer, meeting, parse_at(at, tz or meeting.tz),
                               app.clock.now(), app.actor, quiet=quiet)
        click.echo(f"moved meeting {meeting.id} to {when(meeting)}; " + (
            "nobody on the list was mailed" if quiet else f"update queued for {count} members"))


@meetings_group.command("cancel")
@click.argument("meeting_id", metavar="ID")
@quiet_option
@yes_option
@pass_app
def meetings_cancel(app: App, meeting_id: str, quiet: bool, yes: bool) -> None:
    """Cancel a meeting; the members get METHOD:CANCEL (unless --quiet), its peer-input
    requests move on."""
    if not quiet:
        ask_to_mail_members(app, meeting_id, "a cancellation", yes)
    with app.unit_of_work() as session:
        meeting = find_meeting(session, meeting_id)
        count = reminders.cancel(session, app.renderer, meeting, app.clock.now(), app.actor,
                                 quiet=quiet)
    click.echo(f"cancelled meeting {meeting_id}; " + (
        "nobody on the list was mailed" if quiet else f"notice queued for {count} members"))


@meetings_group.command("remind")
@click.argument("meeting_id", metavar="ID")
@yes_option
@pass_app
def meetings_remind(app: App, meeting_id: str, yes: bool) -> None:
    """Send a reminder to the members now (the planned ones still go out)."""
    ask_to_mail_members(app, meeting_id, "a reminder", yes)
    with app.unit_of_work() as session:
        meeting = find_meeting(session, meeting_id)
        count = reminders.remind(session, app.renderer, meeting, app.clock.now(), app.actor)
    click.echo(f"reminder for meeting {meeting_id} queued for {count} members")


@main.group("peer-input")
def peer_input_group() -> None:
    """Requests for peer-input time at meetings."""


@peer_input_group.command("list")
@click.argument("list_ref", metavar="[LIST]", required=False)
@click.option("--all", "everything", is_flag=True, help="Include decided and past requests.")
@json_option
@pass_app
def peer_input_list(app: App, list_ref: str | None, everything: bool, as_json: bool) -> None:
    """Open requests, in order of arrival."""
    with app.reading() as session:
        ml = services.find_list(session, list_ref) if list_ref else None
        rows = [peer_input.request_dict(r) for r in
                peer_input.requests_of(session, ml, app.clock.now(), everything=everything)]
    emit(rows, as_json, ("id", "status", "meeting_id", "minutes", "requester", "project"))


@peer_input_group.command("approve")
@click.argument("request_id", metavar="ID")
@pass_app
def peer_input_approve(app: App, request_id: str) -> None:
    """Confirm a request's reservation (a held one is booked where it fits)."""
    with app.unit_of_work() as session:
        request = peer_input.find_peer_input(session, request_id)
        click.echo(peer_input.approve(session, app.renderer, request, app.clock.now(),
                                      app.actor))


@peer_input_group.command("decline")
@click.argument("request_id", metavar="ID")
@click.option("--reason", default="", help="Mailed to the requester.")
@pass_app
def peer_input_decline(app: App, request_id: str, reason: str) -> None:
    """Decline a request (the reason is mailed); its time goes to the next that fits."""
    with app.unit_of_work() as session:
        request = peer_input.find_peer_input(session, request_id)
        click.echo(peer_input.decline(session, app.renderer, request, app.clock.now(),
                                      app.actor, reason))


@peer_input_group.command("move")
@click.argument("request_id", metavar="ID")
@click.option("--to", "meeting_id", required=True, metavar="MEETING", help="The meeting's id.")
@click.option("--minutes", type=int, default=None, help="Change the minutes too.")
@pass_app
def peer_input_move(app: App, request_id: str, meeting_id: str, minutes: int | None) -> None:
    """Move a request to another meeting; the requester is told."""
    with app.unit_of_work() as session:
        request = peer_input.find_peer_input(session, request_id)
        click.echo(peer_input.move(session, app.renderer, request, meeting_id,
                                   app.clock.now(), app.actor, minutes))


@peer_input_group.command("edit")
@click.argument("request_id", metavar="ID")
@click.option("--name", default=None, help="The requester's name as list mail shows it.")
@click.option("--project", default=None, help="The project title as list mail shows it.")
@click.option("--minutes", type=int, default=None, help="Minutes (at most 30).")
@pass_app
def peer_input_edit(app: App, request_id: str, name: str | None, project: str | None,
                    minutes: int | None) -> None:
    """Change what list mail shows of a request, or its minutes."""
    with app.unit_of_work() as session:
        request = peer_input.find_peer_input(session, request_id)
        click.echo(peer_input.edit(session, app.renderer, request, app.clock.now(), app.actor,
                                   name=name, project=project, minutes=minutes))


# -- bounces ---------------------------------------------------------------------------------


@main.group("bounces")
def bounces_group() -> None:
    """Bounce scores, the reports behind them, disabled members."""


@bounces_group.command("list")
@click.argument("list_ref", metavar="[LIST]", required=False)
@json_option
@pass_app
def bounces_list(app: App, list_ref: str | None, as_json: bool) -> None:
    """Members with a bounce record: score, status, last reason (disabled first)."""
    with app.reading() as session:
        ml = services.find_list(session, list_ref) if list_ref else None
        rows = bounce_rows(session, ml, app.clock.now())
    if not as_json:
        for row in rows:
            row["score"] = f"{row['score']:g}/{row['threshold']:g}"
    emit(rows, as_json, ("email", "list", "score", "status", "unverified", "last_reason"))


@bounces_group.command("show")
@click.argument("email")
@click.option("--list", "list_ref", default=None, metavar="LIST",
              help="The list, when the address is on several.")
@json_option
@pass_app
def bounces_show(app: App, email: str, list_ref: str | None, as_json: bool) -> None:
    """One member's bounce record: score, reports and refusals, probes."""
    with app.reading() as session:
        ml = services.find_list(session, list_ref) if list_ref else None
        info = bounce_detail(session, email, ml, app.clock.now())
    if as_json:
        emit(info, True)
        return
    events, probes = info.pop("events"), info.pop("probes")
    emit(info, False)
    click.echo("reports and refusals (newest first):")
    for event in events or [{"at": "(none)", "kind": "", "source": "", "counted": None,
                             "verified": True, "reason": ""}]:
        mark = ("" if event["counted"] is None else "counted" if event["counted"]
                else "not counted" if event["verified"] else "unverified")
        click.echo(f"  {event['at']}  {event['kind']}  {event['source']}  {mark}  "
                   f"{event['reason']}".rstrip())
    if probes:
        click.echo("notices (probes):")
        for probe in probes:
            click.echo(f"  {probe['warning']}  sent {probe['sent']}  {probe['status']}")


# -- column submissions (SPEC §6) ------------------------------------------------------------


@main.group("submissions")
def submissions_group() -> None:
    """Column submissions: review, decide, publish, export for the editor."""


@submissions_group.command("list")
@click.argument("list_ref", metavar="[LIST]", required=False)
@click.option("--status", default=None, type=click.Choice(desk.STATUSES),
              help="Only submissions in this state.")
@click.option("--deadline", default=None, metavar="YYYY-MM-DD",
              help="Only those for this deadline (MM-DD: of any year).")
@json_option
@pass_app
def submissions_list(app: App, list_ref: str | None, status: str | None,
                     deadline: str | None, as_json: bool) -> None:
    """Submissions, oldest first."""
    with app.reading() as session:
        ml = services.find_list(session, list_ref) if list_ref else None
        rows = [desk.submission_dict(s) for s in
                desk.submissions_of(session, ml, status=status, deadline=deadline)]
    if not as_json:
        rows = [{**r, "files": ", ".join(r["files"])} for r in rows]
    emit(rows, as_json, ("id", "status", "received", "sender", "title", "files"))


@submissions_group.command("show")
@click.argument("submission_id", metavar="ID")
@json_option
@pass_app
def submissions_show(app: App, submission_id: str, as_json: bool) -> None:
    """One submission with its revisions, files and what was kept out."""
    with app.reading() as session:
        info = desk.submission_dict(desk.find_submission(session, submission_id), full=True)
    if as_json:
        emit(info, True)
        return
    revisions, text = info.pop("revisions"), info.pop("text")
    emit({**info, "files": ", ".join(info["files"])}, False)
    for revision in revisions:
        label = (f"revision {revision['revision']}" if revision["revision"]
                 else f"{revision['status']} follow-up {revision['id']}")
        click.echo(f"{label}: from {revision['sender']}, {revision['received']}, "
                   f"{revision['words']} words")
        for item in revision["files"]:
            flag = "  MACRO-ENABLED" if item["macros"] else ""
            click.echo(f"  file {item['name']} ({item['type']}, {item['size']} bytes){flag}")
        for item in revision["refused"]:
            click.echo(f"  kept out: {item['original']}: {item['reason']}")
    click.echo("")
    click.echo(text.rstrip())


submission_ids = click.argument("submission_ids", metavar="ID...", nargs=-1)


def _waiting_submissions(app: App, ids: Sequence[str], everything: bool, list_ref: str | None,
                         status: str) -> list[str]:
    """The tracking ids a decision acts on: those given, or with --all every one in `status`."""
    _usage(ids, everything)
    with app.reading() as session:
        ml = services.find_list(session, list_ref) if list_ref else None
        waiting = [s.tracking_id for s in desk.submissions_of(session, ml, status=status)
                   ] if everything else []
    return housekeeping.chosen(ids, everything, waiting, f"{status} submission")


@submissions_group.command("accept")
@submission_ids
@all_option
@scope_option
@pass_app
def submissions_accept(app: App, submission_ids: tuple[str, ...], everything: bool,
                       list_ref: str | None) -> None:
    """Accept submissions for the column (--all: every one received and not yet decided)."""
    def accept(submission_id: str) -> str:
        with app.unit_of_work() as session:
            return desk.accept(session, desk.find_submission(session, submission_id),
                               app.clock.now(), app.actor)

    each(_waiting_submissions(app, submission_ids, everything, list_ref, "received"), accept)


@submissions_group.command("decline")
@submission_ids
@all_option
@scope_option
@click.option("--reason", default="", help="Mailed to each author.")
@pass_app
def submissions_decline(app: App, submission_ids: tuple[str, ...], everything: bool,
                        list_ref: str | None, reason: str) -> None:
    """Decline submissions; each author gets a courteous reply (--all: every one received)."""
    def decline(submission_id: str) -> str:
        with app.unit_of_work() as session:
            return desk.decline(session, app.renderer,
                                desk.find_submission(session, submission_id),
                                app.clock.now(), app.actor, reason)

    each(_waiting_submissions(app, submission_ids, everything, list_ref, "received"), decline)


@submissions_group.command("approve-follow-up")
@click.argument("submission_id", metavar="ID")
@click.argument("follow_up", metavar="FOLLOW_UP")
@pass_app
def submissions_approve_follow_up(app: App, submission_id: str, follow_up: str) -> None:
    """Make a held follow-up (numbered in `submissions show`) the next revision."""
    with app.unit_of_work() as session:
        held = desk.find_follow_up(desk.find_submission(session, submission_id), follow_up)
        click.echo(desk.approve_follow_up(session, app.renderer, held, app.clock.now(),
                                          app.actor))


@submissions_group.command("discard-follow-up")
@click.argument("submission_id", metavar="ID")
@click.argument("follow_up", metavar="FOLLOW_UP")
@pass_app
def submissions_discard_follow_up(app: App, submission_id: str, follow_up: str) -> None:
    """Drop a held follow-up without telling anyone."""
    with app.unit_of_work() as session:
        held = desk.find_follow_up(desk.find_submission(session, submission_id), follow_up)
        click.echo(desk.discard_follow_up(session, held, app.clock.now(), app.actor))


@submissions_group.command("publish")
@submission_ids
@all_option
@scope_option
@click.option("--issue", required=True, help='The issue they appear in, e.g. "Winter 2027".')
@pass_app
def submissions_publish(app: App, submission_ids: tuple[str, ...], everything: bool,
                        list_ref: str | None, issue: str) -> None:
    """Record that submissions were published, and in which issue (--all: every accepted one)."""
    def publish(submission_id: str) -> str:
        with app.unit_of_work() as session:
            return desk.publish(session, desk.find_submission(session, submission_id),
                                issue, app.clock.now(), app.actor)

    each(_waiting_submissions(app, submission_ids, everything, list_ref, "accepted"), publish)


@submissions_group.command("export")
@click.argument("submission_ids", metavar="[ID]...", nargs=-1)
@click.option("--deadline", default=None, metavar="YYYY-MM-DD",
              help="Every submission for this deadline (declined ones left out).")
@click.option("--list", "list_ref", default=None, metavar="LIST", help="Only of this list.")
@click.option("--to", "target", required=True, metavar="DIR|FILE.zip",
              type=click.Path(path_type=Path), help="A new folder, or a .zip file.")
@pass_app
def submissions_export(app: App, submission_ids: tuple[str, ...], deadline: str | None,
                       list_ref: str | None, target: Path) -> None:
    """Files and an index (index.md, index.json) for the editor, per submission a folder."""
    if bool(submission_ids) == bool(deadline):
        raise ListservError("give either submission ids or --deadline")
    with app.unit_of_work() as session:
        if deadline:
            ml = services.find_list(session, list_ref) if list_ref else None
            chosen = [s for s in desk.submissions_of(session, ml, deadline=deadline)
                      if s.status != "declined"]
        else:
            chosen = [desk.find_submission(session, i) for i in dict.fromkeys(submission_ids)]
        click.echo(export_submissions(session, app.settings.data_dir, chosen, target,
                                      app.clock.now(), app.actor))


# -- the archive (SPEC §3) -------------------------------------------------------------------

since_option = click.option("--since", default=None, metavar="YYYY-MM-DD[ HH:MM]",
                            help="Only posts dated from then on (UTC).")
until_option = click.option("--until", default=None, metavar="YYYY-MM-DD[ HH:MM]",
                            help="Only posts dated before then (UTC; a bare day includes it).")


def _period(since: str | None, until: str | None) -> tuple[Any, Any]:
    return (archive_views.parse_when(since, "--since") if since else None,
            archive_views.parse_when(until, "--until", end=True) if until else None)


@main.group("archive")
def archive_group() -> None:
    """The archive: every distributed post, as the members got it."""


@archive_group.command("list")
@click.argument("list_ref", metavar="LIST")
@since_option
@until_option
@json_option
@pass_app
def archive_list(app: App, list_ref: str, since: str | None, until: str | None,
                 as_json: bool) -> None:
    """A list's archived posts, oldest first."""
    start, end = _period(since, until)
    with app.reading() as session:
        rows = archive_views.posts(session, services.find_list(session, list_ref), start, end)
    emit(rows, as_json, ("id", "number", "date", "sender", "subject"))


@archive_group.command("show")
@click.argument("post_id", metavar="ID")
@json_option
@pass_app
def archive_show(app: App, post_id: str, as_json: bool) -> None:
    """One archived post: its details, then the message as the members got it."""
    with app.reading() as session:
        post = archive_views.show(archive_views.find_post(session, post_id))
    if as_json:
        emit(post, True)
        return
    message = post.pop("message")
    emit(post, False)
    click.echo("")
    click.echo(message.replace("\r\n", "\n"), nl=False)


@archive_group.command("search")
@click.argument("list_ref", metavar="LIST")
@click.argument("words", nargs=-1, required=True)
@click.option("--limit", default=archive_search.MAX_RESULTS, show_default=True,
              type=click.IntRange(1, 1000), help="How many of the best matches.")
@json_option
@pass_app
def archive_search_command(app: App, list_ref: str, words: tuple[str, ...], limit: int,
                           as_json: bool) -> None:
    """Posts with every one of WORDS (in subject, author or text), best match first."""
    with app.reading() as session:
        ml = services.find_list(session, list_ref)
        rows = [archive_views.post_row(p)
                for p in archive_search.search(session, ml, " ".join(words), limit)]
    emit(rows, as_json, ("id", "number", "date", "sender", "subject"))


@archive_group.command("export")
@click.argument("list_ref", metavar="LIST")
@click.option("--mbox", "mbox", required=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="Write the posts here as mboxrd (a private file, 0600).")
@since_option
@until_option
@pass_app
def archive_export(app: App, list_ref: str, mbox: Path, since: str | None,
                   until: str | None) -> None:
    """Write a list's archived posts to an mbox file (mboxrd: mutt and Python read it)."""
    start, end = _period(since, until)
    with app.reading() as session:
        ml = services.find_list(session, list_ref)
        count = archive_views.export_mbox(session, ml, mbox, start, end)
        address = ml.address
    click.echo(f"wrote {count} posts of {address} to {mbox}")


@archive_group.command("remove")
@click.argument("post_id", metavar="ID")
@click.option("--reason", default=archive_views.WITHDRAWN, show_default=True,
              help="Why, for the log.")
@pass_app
def archive_remove(app: App, post_id: str, reason: str) -> None:
    """Take a post out of the archive for good (the log keeps a line saying why)."""
    with app.unit_of_work() as session:
        archive_views.remove(session, archive_views.find_post(session, post_id),
                             app.clock.now(), app.actor, reason)
    click.echo(f"removed archived post {post_id}: {' '.join(reason.split())}")


# -- queue and log ---------------------------------------------------------------------------


@main.group(invoke_without_command=True)
@click.option("--failed", is_flag=True,
              help="Show the final failures instead: recipients given up on or refused, and "
                   "incoming mail whose handling failed.")
@click.option("--sent", is_flag=True,
              help="Show delivered mail instead: the newest 100 messages nothing waits for, "
                   "with how many recipients each was sent to, failed for or dropped (kept "
                   "as counts after [retention] outgoing_days).")
@json_option
@click.pass_context
def queue(ctx: click.Context, failed: bool, sent: bool, as_json: bool) -> None:
    """What is still to be done: mail not yet delivered (with reasons), mail not yet handled."""
    if ctx.invoked_subcommand is not None:
        return
    if failed and sent:
        raise click.UsageError("--failed and --sent are two different listings: choose one")
    app: App = ctx.obj
    with app.reading() as session:
        if sent:
            emit(sent_items(session), as_json,
                 ("id", "kind", "list", "queued_at", "sent", "failed", "dropped", "bytes"))
            return
        rows = services.queue_items(session, failed)
    emit(rows, as_json, ("id", "direction", "kind", "list", "recipients", "next_attempt",
                         "reason"))


@queue.command("retry")
@click.argument("inbound_id", metavar="ID")
@pass_app
def queue_retry(app: App, inbound_id: str) -> None:
    """Run a failed incoming message (in-N, from `listserv queue --failed`) again."""
    with app.unit_of_work() as session:
        row = services.retry_inbound(session, inbound_id, app.clock.now(), app.actor)
        click.echo(f"in-{row.id} will be handled again at the router's next look")


@main.command("log")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1),
              help="How many of the newest entries.")
@click.option("--list", "list_ref", default=None, metavar="LIST", help="Only this list's.")
@click.option("--since", default=None, metavar="YYYY-MM-DD[ HH:MM]",
              help="Only entries from then on (UTC).")
@click.option("--action", default="", metavar="A",
              help="Only actions starting with A (e.g. held, member-banned, discarded).")
@json_option
@pass_app
def log_command(app: App, limit: int, list_ref: str | None, since: str | None, action: str,
                as_json: bool) -> None:
    """Every chair action and automatic decision: who, what, when."""
    start = housekeeping.parse_since(since) if since else None
    with app.reading() as session:
        ml = services.find_list(session, list_ref) if list_ref else None
        rows = services.log_entries(session, limit, ml=ml, since=start, action=action)
    emit(rows, as_json, ("at", "actor", "action", "list", "detail"))


# -- operation -------------------------------------------------------------------------------


@main.command("status")
@json_option
@pass_app
def status_command(app: App, as_json: bool) -> None:
    """Health at a glance; exits 2 when something is wrong (for monitoring).

    Wrong: the oldest queued item older than [status] max_queue_age_minutes, an incoming
    message whose handling failed, an intake port that does not answer, a worker of the
    daemon not alive, a schema to upgrade.
    """
    with _database_errors():
        report = status_report(app.settings, app.store, app.clock.now())
    click.echo(json.dumps(report, indent=2) if as_json else "\n".join(status_lines(report)))
    if not report["ok"]:
        raise click.exceptions.Exit(2)


@main.group()
def templates() -> None:
    """The mail templates: which file each list uses, and checks of the operator's own."""


@templates.command("list")
@click.option("--list", "list_ref", default=None, metavar="LIST",
              help="As this list sees them (its own folder templates_dir/LIST@DOMAIN/ first).")
@click.option("--lang", default=None, metavar="xx", help="Only this language.")
@json_option
@pass_app
def templates_list(app: App, list_ref: str | None, lang: str | None, as_json: bool) -> None:
    """Each template in each language, and the file that renders it."""
    address = _list_address(app, list_ref)
    rows = [s.as_dict() for s in mail_templates.sources(app.renderer, address, lang)]
    emit(rows, as_json, ("name", "lang", "origin", "file"))


@templates.command("show")
@click.argument("name")
@click.option("--list", "list_ref", default=None, metavar="LIST",
              help="As this list sees it.")
@click.option("--lang", default="en", show_default=True, metavar="xx",
              help="In this language.")
@pass_app
def templates_show(app: App, name: str, list_ref: str | None, lang: str) -> None:
    """Print the file that renders template NAME (its path first, then its text)."""
    address = _list_address(app, list_ref)
    name = name if name.endswith(".txt") else f"{name}.txt"
    try:
        found, text = mail_templates.text_of(app.renderer, name, lang, address)
    except jinja2.TemplatesNotFound:
        raise click.ClickException(f"no template named {name} (see `listserv templates "
                                   "list`)") from None
    click.echo(f"# {found.path} ({found.origin}, {found.lang})")
    click.echo(text, nl=False)


@templates.command("check")
@pass_app
def templates_check(app: App) -> None:
    """Check every file in templates_dir against the built-in template it replaces: it must
    parse and use no variable the built-in one is not given. Exits 1 naming file and line."""
    problems = mail_templates.check(app.renderer)
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        raise click.exceptions.Exit(1)
    where = app.settings.templates_dir
    click.echo(f"templates in {where}: no problems" if where else
               "no templates_dir configured: the built-in templates are used")


def _list_address(app: App, list_ref: str | None) -> str:
    if not list_ref:
        return ""
    with app.reading() as session:
        return services.find_list(session, list_ref).address


@main.group()
def service() -> None:
    """Service files to run the daemon at boot."""


@service.command("systemd")
@click.option("--user", default=None, metavar="NAME",
              help="The account the daemon runs as. Default: whoever runs this command.")
@pass_app
def service_systemd(app: App, user: str | None) -> None:
    """Print a hardened systemd unit for `listserv serve` with the config in use."""
    click.echo(systemd_unit(app.settings, app.config_path, user or getpass.getuser(),
                            listserv_executable()), nl=False)


@main.command()
@click.argument("list_ref", metavar="[LIST]", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@pass_app
def doctor(app: App, list_ref: str | None, as_json: bool) -> None:
    """Check what list mail needs to arrive, with a fix for each problem; exits 2 on one.

    MX (or the hosted mailbox), SPF, DKIM and DMARC of each list domain, TLS and AUTH to the
    relay, the web endpoint's base_url, the queue (docs/doctor.md).
    """
    with app.reading() as session:
        facts = list_facts(session, services.find_list(session, list_ref) if list_ref else None)
    with _database_errors():
        report = doctor_report(app.settings, app.store, facts, app.clock.now())
    click.echo(json.dumps(report, indent=2) if as_json else "\n".join(doctor_lines(report)))
    if not report["ok"]:
        raise click.exceptions.Exit(2)


@main.group()
def mta() -> None:
    """Settings for the MTA in front of the daemon."""


@mta.command("postfix")
@click.argument("list_ref", metavar="[LIST]", required=False)
@click.option("--maps-dir", type=click.Path(path_type=Path), default=Path("/etc/postfix"),
              show_default=True, help="Where the map files will be.")
@click.option("--map-type", default="texthash", show_default=True, metavar="TYPE",
              help="Postfix lookup table type of the maps (hash, lmdb: postmap them).")
@pass_app
def mta_postfix(app: App, list_ref: str | None, maps_dir: Path, map_type: str) -> None:
    """Print main.cf and map lines routing every list address to the daemon's LMTP port, with
    Postfix refusing every other address at the lists' domains."""
    with app.reading() as session:
        addresses = list_addresses(
            session, services.find_list(session, list_ref) if list_ref else None)
    click.echo(postfix_config(app.settings, addresses, maps_dir.absolute(), map_type).text(),
               nl=False)


@main.group()
def dkim() -> None:
    """DKIM signing keys (docs/deliverability.md)."""


@dkim.command("keygen")
@click.argument("domain")
@click.option("--selector", default="", metavar="NAME",
              help="The key's selector. Default: the one [dkim] names, else sYYYYMM.")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the key. Default: the file [dkim] names for the domain.")
@json_option
@pass_app
def dkim_keygen(app: App, domain: str, selector: str, key_file: Path | None,
                as_json: bool) -> None:
    """Write a new 2048-bit RSA key (mode 0600) and print the DNS TXT record to publish."""
    made = keygen(app.settings, domain, app.clock.now(), selector, key_file)
    if as_json:
        emit({"domain": made.domain, "selector": made.selector, "key_file": str(made.key_file),
              "name": made.name, "strings": made.strings, "configured": made.configured}, True)
        return
    click.echo(f"Wrote {made.key_file} (2048-bit RSA, mode 0600). Publish this TXT record:")
    click.echo(made.zone_line())
    if not made.configured:
        click.echo(f"Then sign with it: in [dkim] (or [dkim.keys.\"{made.domain}\"]) set "
                   f'selector = "{made.selector}" and private_key_file = "{made.key_file}".')


if __name__ == "__main__":
    main()
