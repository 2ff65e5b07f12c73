"""Loading, encoding, splitting and caching datasets."""
