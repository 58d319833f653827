"""The markdown report (``markdown``); the studies draw their figures with ``xpnet.plots``."""
