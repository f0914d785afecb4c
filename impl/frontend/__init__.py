"""The frontend endpoint: the reference client of a commspec kernel."""

from __future__ import annotations

from commspec.impl.core.frontend import FrontendOptions
from commspec.impl.core.frontend_policies import FrontendPolicies

from .endpoint import FrontendEndpoint

__all__ = ["FrontendEndpoint", "FrontendOptions", "FrontendPolicies"]
