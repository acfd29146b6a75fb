"""Typed SQLAlchemy models: the whole durable state of listserv.

Importing any of them imports them all, so `Base.metadata` always holds every table (Alembic's
env.py and `Store.migrate` create and compare the whole schema): `base` (Base, the column
types), `core` (lists, owners, members, inbound, held, requests, audit, once), `outgoing` (the
queue, the automatic-mail cap, the sending limits' ledger), `features` (meetings and peer
input, bounces, the column, hosted-mailbox bookkeeping) and `archive` (the archived posts).
"""

from listserv.store.models import (  # noqa: F401 (every table)
    archive,
    base,
    core,
    features,
    outgoing,
)
