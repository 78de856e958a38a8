"""Pure functions between formats: no I/O beyond their arguments."""
