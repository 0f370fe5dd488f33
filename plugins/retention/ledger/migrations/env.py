"""Alembic environment for the ledger. Run through ``retention.ledger.database.migrate``, not alembic.ini.

The caller passes an open connection in ``config.attributes["connection"]`` (so the upgrade runs in
the caller's transaction) or a URL as ``sqlalchemy.url``.
"""

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from retention.ledger.models import VERSION_TABLE, Base

config = context.config


def _configure(*, render_as_batch: bool, url: str | None = None, connection: Connection | None = None,
               literal_binds: bool = False) -> None:
    context.configure(target_metadata=Base.metadata, version_table=VERSION_TABLE, compare_type=True,
                      url=url, connection=connection, literal_binds=literal_binds, render_as_batch=render_as_batch)


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("the ledger migrations need a connection or sqlalchemy.url: run them through "
                           "`retention ledger migrate`")
    return url


def run_offline() -> None:
    url = _url()
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection: Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif (conn := config.attributes.get("connection")) is not None:
    run_online(conn)
else:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.begin() as conn:
        run_online(conn)
    engine.dispose()
