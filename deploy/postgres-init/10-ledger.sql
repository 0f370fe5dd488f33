-- The retention ledger gets its own database next to Airflow's metadata database.
CREATE DATABASE retention_ledger OWNER airflow;
