"""Customer API credentials in the ledger: issued and revoked by staff, one account each (helper C fills this)."""

from __future__ import annotations

from retention.ledger.events import EventLog


class CustomerCredentials(EventLog):
    """Issuing, checking and revoking the credentials of the customer routes (``retention.api.customers``)."""
