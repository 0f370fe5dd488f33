"""The product's HTTP API (certificates), served inside Airflow's api-server by ``retention_plugin``."""

from retention.api.app import create_app

__all__ = ["create_app"]
