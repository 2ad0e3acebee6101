"""pytest fixtures for testing against a local edgechain network (work in progress)."""
