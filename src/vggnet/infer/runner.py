"""How a loaded model runs for `predict`, `eval` and `embed`: the fast path by default, exact fp32 on request.

- `fp32`: the model as trained, channels_last. Exact.
- `bf16` / `fp16` (what `--precision auto` picks where the hardware runs it natively): BatchNorm folded into the
  convolutions, weights cast once to the low precision (autocast would re-cast them on every call), channels_last.
- `compile=True`: torch.compile (inductor, weights frozen) on top, for long jobs; its one-time cost is logged.

    >>> runner = InferenceRunner(loaded)          # loaded = load_for_inference(...)
    >>> logits = runner(images)                   # float32 logits whatever the precision
"""

import contextlib
import copy
import logging
import time
import warnings

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..models.vgg import VGG
from .source import LoadedModel

logger = logging.getLogger("vggnet")
# The dtype each precision feeds the model (an int8 program takes float32 and quantizes inside).
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}


def fold_batchnorm(model: VGG) -> VGG:
    """Fold each BatchNorm into the convolution before it (in place; eval-mode statistics), leaving an Identity
    in its place so that layer names and indices stay. The outputs are unchanged up to rounding."""
    features = model.features
    for index in range(len(features) - 1):
        conv, norm = features[index], features[index + 1]
        if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
            features[index] = fuse_conv_bn_eval(conv.eval(), norm.eval())
            features[index + 1] = nn.Identity()
    return model


class InferenceRunner:
    """Runs a loaded model on preprocessed float32 batches and returns float32 outputs.

    Args:
        loaded: The model, its device and its resolved precision.
        fold: Fold BatchNorm in the low-precision path (off when intermediate layers are read, as in `embed`,
            where `conv*` should stay the convolution's own output).
        compile: torch.compile the prepared model.
    """

    def __init__(self, loaded: LoadedModel, fold: bool = True, compile: bool = False) -> None:
        self.device = loaded.device
        self.dtype = _DTYPES[loaded.precision]
        # An int8 program runs well only compiled (inductor's int8 kernels).
        self.compiled = compile or loaded.precision == "int8"
        self._compile_reported = False
        model = loaded.model
        if loaded.precision != "int8":
            if self.dtype != torch.float32:
                model = copy.deepcopy(model).eval()
                if fold:
                    fold_batchnorm(model)
                model = model.to(dtype=self.dtype)
            model = model.eval().to(device=self.device, memory_format=torch.channels_last)
        self.model = model
        self._forward = torch.compile(model, dynamic=False) if self.compiled else model

    def prepare_input(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device, dtype=self.dtype, memory_format=torch.channels_last, non_blocking=True)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), self._compile_settings():
            started = time.perf_counter()
            output = self._forward(self.prepare_input(images)).float()
        if self.compiled and not self._compile_reported:
            self._compile_reported = True
            logger.info("torch.compile: first batch (with compilation) took %.1f s", time.perf_counter() - started)
        return output

    @contextlib.contextmanager
    def _compile_settings(self):
        """While a compiled model runs (and so compiles, on its first call or a new batch size): weights frozen,
        which lets inductor pre-pack them once, and quiet about inductor's own int8 tensor copies."""
        if not self.compiled:
            yield
            return
        import torch._inductor.config as inductor_config

        with inductor_config.patch(freezing=True), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="To copy construct from a tensor")
            yield
