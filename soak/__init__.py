"""The soak: hundreds of orders under scheduled faults, then the invariant checker."""
