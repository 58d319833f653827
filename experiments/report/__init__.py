"""The markdown report and the studies' figures."""
