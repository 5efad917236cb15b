"""barkeeper: a Discord companion bot and a PostgreSQL memory layer for chat agents."""

__version__ = "0.1.0"

__all__ = ["__version__"]
