"""Feature-interaction backbones, one module each; importing this package registers them all.

Every module of this package is imported, so a new backbone registers by existing: no list here
to keep in sync.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
