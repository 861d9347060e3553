"""One module per kind of check: its config model beside its validation.

Importing this package imports every module in it, and each registers its model in
config.registry.KINDS (``@KINDS.register(probe="probes.<kind>")``): dropping a file here
is all the config needs to know of a new kind. Modules are imported in name order, which
is the order ``unknown kind`` messages list the kinds in.
"""

from __future__ import annotations

import importlib
import pkgutil

from config.registry import KINDS as KINDS
from config.registry import Kinds


def _import_all() -> Kinds:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return KINDS


_import_all()
