"""Data retention and deletion orchestrator: rules as code, a hash-chained ledger, certified deletion."""

__version__ = "0.1.0"
