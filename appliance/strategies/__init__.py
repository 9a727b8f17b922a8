"""Strategies: the Strategy base class, the registry of shipped types, and the manager that runs them."""
