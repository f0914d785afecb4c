"""The frontend endpoint: the reference client of a commspec kernel."""

from __future__ import annotations

from .endpoint import FrontendEndpoint
from .options import FrontendOptions

__all__ = ["FrontendEndpoint", "FrontendOptions"]
