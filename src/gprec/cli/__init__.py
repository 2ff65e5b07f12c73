"""The `gprec` command line: argument handling only, the work lives in the library."""
