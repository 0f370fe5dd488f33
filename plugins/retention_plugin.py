"""Mounts the retention API (certificates, JWKS, customer downloads) into Airflow's api-server at /retention."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from retention.api import create_app


class RetentionPlugin(AirflowPlugin):
    name = "retention"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/retention", "name": "Retention certificates"}]
