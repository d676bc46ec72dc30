"""The tutor model: the llama.cpp runtime, the service that holds it, and its client."""
