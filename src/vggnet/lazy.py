"""Packages whose public names are imported on first use (PEP 562), so that `import vggnet` and `vggnet --help`
do not import torch.

    # in a package's __init__.py
    __getattr__, __dir__ = lazy_exports(__name__, {".factory": ["create_model", "load_model"]})

`from package import create_model` and `package.create_model` import `.factory` then; type checkers, which do
not run `__getattr__`, read the same names from an `if TYPE_CHECKING:` block of ordinary imports.
"""

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, list[str]]) -> tuple[Callable[[str], object], Callable[[], list]]:
    """The module-level `__getattr__` and `__dir__` of a package whose public names live in its submodules.

    Args:
        package: The package's `__name__`.
        exports: Submodule, relative to `package` (`".factory"`), -> the names it defines that the package offers.

    Returns:
        `__getattr__`, which imports a name's submodule on first access and keeps the value in the package (later
        look-ups do not come back), and `__dir__`, which lists the offered names with those already loaded.
    """
    home = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(home))

    return __getattr__, __dir__
