"""Every error dbos_async raises (also importable from ``dbos_async``)."""

from ._errors import *  # noqa: F403
from ._errors import __all__ as __all__
