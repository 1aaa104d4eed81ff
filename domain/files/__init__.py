"""Activity files (GPX, TCX, FIT) parsed into one model: pure code, no I/O beyond bytes."""
