"""Airflow-facing building blocks the DAG files share: their default_args (``defaults``), the subprocessor erasure
task group (``subprocessor_groups``), the retry policy (``retry``), failure notifications and the sweep's deadline
alert (``notify``), and the manual attestation form (``hitl``). The top layer: it may import any other."""
