"""First-party plugins. Each registers through the same entry points a third-party package would use."""
