"""Alembic environment: runs on the connection that Store.migrate() hands over."""

from alembic import context

from listserv.store.models.archive import include_name, include_object
from listserv.store.models.base import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    # The full-text index is made by hand (models/archive.py): not a difference.
    include_name=include_name,
    include_object=include_object,
)
with context.begin_transaction():
    context.run_migrations()
