"""`vggnet serve`: a model as an HTTP service (the Open Inference Protocol and plain routes) and a web page.

    vggnet serve --model runs/train/exp/best.pt        # http://127.0.0.1:8000/ : the page; /docs : the API

- `settings`: `ServeSettings`, the flags' values, validated (torch-free)
- `batcher`: `DynamicBatcher`, requests that arrive together run as one batch, off the event loop
- `served`: the served models, each with its runner, batcher and worker thread; readiness and draining
- `kserve`: the `/v2` routes; `routes`: the plain routes and the page; `page/index.html`: the page
- `guards`: the upload limit and the API key; `telemetry`: the Prometheus metrics
- `app`: `create_app`; `run`: `serve`, uvicorn with a graceful shutdown

Needs the `serve` extra: `pip install 'vggnet[serve]'`.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {
    ".app": ["create_app"],
    ".run": ["serve"],
    ".settings": ["ServeSettings"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)

if TYPE_CHECKING:  # what type checkers and IDEs read; at run time `__getattr__` imports each name on first use
    from .app import create_app
    from .run import serve
    from .settings import ServeSettings
