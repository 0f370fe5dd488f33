"""Airflow-facing building blocks the DAG files share: their default_args (``defaults``), the subprocessor erasure
task group (``subprocessor_groups``), the retry policy (``retry``), failure notifications and the sweep's deadline
alert (``notify``), the manual attestation form (``hitl``) and the four-eyes approval forms of an offboarding and a
subject request (``approval``). The top layer: it may import any other."""
