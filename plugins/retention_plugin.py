"""Mounts the retention API (certificates, JWKS, customer downloads, operator views) into Airflow's api-server
at /retention, and adds the operator page to the UI's Browse menu."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from retention.api import create_app


class RetentionPlugin(AirflowPlugin):
    name = "retention"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/retention", "name": "Retention certificates"}]
    # Airflow frames href at /plugin/retention; the page and its data routes check Airflow's session and a
    # retention permission.
    external_views = [{"name": "Retention", "href": "/retention/ui/", "url_route": "retention",
                       "destination": "nav", "category": "browse"}]
