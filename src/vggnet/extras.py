"""Optional dependencies: import one, or say which extra installs it.

    >>> from vggnet.extras import require
    >>> onnxruntime = require("onnxruntime", "export", "ONNX export")

Light on purpose (no torch), so that any module can use it.
"""

import importlib
from types import ModuleType


class MissingExtra(ImportError, RuntimeError):
    """An optional package is not installed (or is too old); the message names the package and the pip command.

    An ImportError for code that checks for a missing package, and a RuntimeError so that the CLI reports it as a
    failed command in one line, without a traceback."""


def require(module_name: str, extra: str, purpose: str) -> ModuleType:
    """Import `module_name` and return it.

    Args:
        module_name: What to import, e.g. `"onnxruntime"` or `"torchao.quantization.pt2e.quantize_pt2e"`.
        extra: The vggnet extra that installs it (`export`, `quantize`, `benchmark`, `tensorboard`).
        purpose: What needs it, for the message: `"ONNX export"`.

    Raises:
        MissingExtra: the package is missing, or installed without that module (too old a release).
    """
    package = module_name.split(".")[0]
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        installed = package != module_name and _importable(package)
        what = f"a newer {package} (the installed one has no {module_name})" if installed else package
        upgrade = "-U " if installed else ""
        raise MissingExtra(f"{purpose} needs {what}: pip install {upgrade}'vggnet[{extra}]'") from error


def _importable(package: str) -> bool:
    try:
        importlib.import_module(package)
    except ImportError:
        return False
    return True
