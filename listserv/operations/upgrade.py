"""Safe upgrades: `listserv init` migrates forward and says from which schema revision to which;
a daemon refuses a database whose schema is older or newer than its code (SPEC §4, issue 19).
"""

from __future__ import annotations

from alembic.script import ScriptDirectory
from alembic.util import CommandError

from listserv.errors import ListservError
from listserv.store.engine import Store, alembic_config


def known_revision(revision: str) -> bool:
    """Whether this code's migrations know the revision (an unknown one is newer)."""
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def stale_schema(store: Store) -> str:
    """What keeps a daemon from serving this database, in one line; "" when its schema is this
    code's, or when there is no schema yet (a first start creates it, as `init` would)."""
    at, code = store.schema_revision(), store.code_revision()
    if at is None or at == code:
        return ""
    if not known_revision(at):
        return (f"the database schema is at revision {at}, newer than this listserv "
                f"({code}): run the listserv that upgraded it (`listserv --version` there)")
    return (f"the database schema is at revision {at}, older than this listserv's ({code}): "
            "run `listserv init` to migrate it, then start again")


def upgrade(store: Store) -> str:
    """Create or migrate the schema forward; says from which revision to which.

    A schema newer than this code is refused: migrating cannot go back, and the newer code's
    data would be misread.
    """
    before, code = store.schema_revision(), store.code_revision()
    if before is not None and not known_revision(before):
        raise ListservError(f"the database schema is at revision {before}, newer than this "
                            f"listserv ({code}): install the listserv that upgraded it")
    store.migrate()
    after = store.schema_revision()
    if before is None:
        return f"created the database at schema revision {after}"
    if before == after:
        return f"the database schema is current (revision {after}): nothing to migrate"
    return f"migrated the database from schema revision {before} to {after}"
