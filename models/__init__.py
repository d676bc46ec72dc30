"""Model store, tutor runtime and knowledge tracing (later issues)."""
