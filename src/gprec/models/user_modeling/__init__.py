"""User-modeling baselines of the GPRec paper's Table II, one module each; importing this
package registers them all (MMoE, PLE, STAR: groups from a partition field; APG, PEPNet:
individual; DGPM: learned groups).

Every module of this package is imported, so a new model registers by existing.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
