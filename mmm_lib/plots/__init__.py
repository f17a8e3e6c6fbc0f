"""Plot functions, one module per stage; each returns a matplotlib Figure."""
