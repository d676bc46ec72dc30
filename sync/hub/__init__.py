"""The district hub: its home (keys, enrolled boxes), database, receiving bundles, web app."""
