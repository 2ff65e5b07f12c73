"""gprec: deep recommenders that model users at two levels, groups and individuals."""

__version__ = "0.1.0"
