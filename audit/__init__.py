"""The audit trail: event schemas, durable spool, sinks and verification (issue #6)."""
