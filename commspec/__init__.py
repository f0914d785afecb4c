"""commspec: sound Jupyter comm RPCs when a frontend goes away.

``commspec.model`` is the specification (pure, no I/O); ``commspec.impl`` is the
reference implementation over ZeroMQ.
"""

__version__ = "0.1.0"
