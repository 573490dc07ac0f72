"""Schema migrations of the `tasks` app."""
