"""The demo school: the CC BY 4.0 demo pack and a seeded school with history."""
