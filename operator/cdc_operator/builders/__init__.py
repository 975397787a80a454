"""Pure functions from specs to configuration and manifests: no I/O, unit-tested alone."""
