"""lintorch: find the bugs that make a PyTorch model silently fail to learn."""

__version__ = "0.1.0"
