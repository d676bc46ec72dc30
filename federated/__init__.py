"""Flower federated training apps (later issues)."""
