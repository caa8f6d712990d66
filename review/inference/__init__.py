"""The verdict engine: the verdict schema, output parsing, and providers behind one interface."""
