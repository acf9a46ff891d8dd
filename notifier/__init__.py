"""notifier: the ward's notice service."""

__version__ = "0.1.0"
