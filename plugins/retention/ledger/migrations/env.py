"""Alembic environment for the ledger. Run through ``retention.ledger.database.migrate``, not alembic.ini.

The caller passes an open connection in ``config.attributes["connection"]`` (so the upgrade runs in
the caller's transaction) or a URL as ``sqlalchemy.url``.
"""

from alembic import context
from sqlalchemy import create_engine, pool

from retention.ledger.models import VERSION_TABLE, Base

config = context.config


def _configure(**kw) -> None:
    context.configure(target_metadata=Base.metadata, version_table=VERSION_TABLE,
                      compare_type=True, **kw)


def run_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif (conn := config.attributes.get("connection")) is not None:
    run_online(conn)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.begin() as conn:
        run_online(conn)
    engine.dispose()
