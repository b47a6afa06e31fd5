"""selfprm: process reward models from self-generated step labels."""
__version__ = "0.1.0"
