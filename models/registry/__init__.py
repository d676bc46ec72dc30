"""The model registry: verified model files, which one is active, and the default models."""
