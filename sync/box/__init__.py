"""Sync on the box: collecting records, sealing them into the outbox, and sending them."""
