"""Store-and-forward sync: bundles, crypto, transports and the district hub (later issues)."""
