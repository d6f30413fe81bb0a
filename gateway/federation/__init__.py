"""Gateway-to-gateway messaging: inbox, receipts, outbox delivery, message-type handlers."""
