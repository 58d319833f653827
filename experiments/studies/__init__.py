"""The built-in studies, one module each, in the order they run and are reported."""
