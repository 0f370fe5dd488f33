"""Data subject requests (DPA 5(a)): find, export or erase one person's data within one customer account.

A request is filed (by the customer's API credential or by staff), its identifiers are expanded through the
inventory's linked identifiers, previewed (counts per location and subprocessor), approved by a second person
above ``RETENTION_SUBJECT_APPROVAL_RECORDS``, and then carried out on the engine's task model: every task selects
only the person's records (``Selector.subject``), checks legal holds right before each batch, writes intent and
outcome, and is verified by re-querying. An access request yields an encrypted package; an erasure a signed
certificate. Identifiers enter the ledger's chain only as keyed hashes and are erased after the appeal window.
"""
