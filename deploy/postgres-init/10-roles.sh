#!/bin/bash
# Run once by the postgres image, as its superuser, on an empty data directory (docker-entrypoint-initdb.d).
# Airflow's metadata and the retention ledger get separate databases and separate roles:
#   airflow                   owns the airflow database (Airflow's metadata).
#   retention_ledger_owner    owns the retention_ledger database and so its tables; only the airflow-init
#                             container connects as it, to run `retention ledger migrate` and `retention ledger grant`.
#   retention_ledger_runtime  the role every service's RETENTION_DATABASE_URL connects as. It owns nothing, so it
#                             cannot drop or disable the triggers that keep events append-only; its table
#                             privileges come from `retention ledger grant` (on events: SELECT and INSERT only).
# The passwords come from the environment (deploy/env.example) through psql's \getenv, so they are never in a
# command line, and :'name' quotes them as SQL literals.
set -euo pipefail
: "${AIRFLOW_DB_PASSWORD:?}" "${RETENTION_LEDGER_OWNER_PASSWORD:?}" "${RETENTION_LEDGER_RUNTIME_PASSWORD:?}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" <<'SQL'
\getenv airflow_password AIRFLOW_DB_PASSWORD
\getenv owner_password RETENTION_LEDGER_OWNER_PASSWORD
\getenv runtime_password RETENTION_LEDGER_RUNTIME_PASSWORD

CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;

CREATE ROLE retention_ledger_owner LOGIN PASSWORD :'owner_password';
CREATE DATABASE retention_ledger OWNER retention_ledger_owner;
CREATE ROLE retention_ledger_runtime LOGIN PASSWORD :'runtime_password';

-- Each role reaches its own database only (PUBLIC may connect to any database by default).
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE retention_ledger FROM PUBLIC;
GRANT CONNECT ON DATABASE retention_ledger TO retention_ledger_runtime;
SQL
