"""Schoolbox, the box itself: the data layer, content, knowledge tracing, the tutor, the CLI.

Importing this package loads nothing heavy: the web app is `appliance.web`, and the
headless parts (the store, sync, the hub, models, the Flower apps) never import it.
"""

__version__ = "0.1.0"
