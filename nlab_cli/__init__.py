"""nlab: a command-line research lab for neural-network experiments."""
__version__ = "0.1.0"
