"""Content packs: reading and validating them (loader), and importing them (importer)."""
