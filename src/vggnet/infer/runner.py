"""How a loaded model runs for `predict`, `eval` and `embed`: the fast path by default, fp32 on request.

- `fp32`: the model as trained, with BatchNorm folded into the convolutions and, on the CPU, each ReLU fused into
  the layer before it (`models.inference_form`); the plain module's outputs up to float rounding.
- `bf16` / `fp16` (what `--precision auto` picks where the hardware runs it natively): the same, with the weights
  cast once to the low precision (autocast would re-cast them on every call).
  The same form as the training loop validates with (`models.inference_form`), so that `vggnet eval` of a run's
  `best.pt` reproduces the validation it recorded.
- `compile=True`: torch.compile (inductor, weights frozen, which fuses and prepacks itself) on the folded model,
  for long jobs; its one-time cost is logged.

>>> import torch, vggnet
>>> from vggnet.infer.runner import InferenceRunner
>>> model = vggnet.create_model("vgg11_bn", num_classes=3, head="compact", width_mult=0.125)
>>> runner = InferenceRunner(vggnet.load_for_inference(model, device="cpu", precision="bf16"))
>>> runner(torch.randn(2, 3, 32, 32)).dtype  # float32 logits whatever the precision
torch.float32
"""

import contextlib
import logging
import time
import warnings

import torch

from ..models.inference_form import inference_form, inference_input
from .source import LoadedModel, inference_ready

logger = logging.getLogger("vggnet")
# The dtype each precision feeds the model (an int8 program takes float32 and quantizes inside).
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}


class InferenceRunner:
    """Runs a loaded model on preprocessed float32 batches and returns float32 outputs.

    Args:
        loaded: The model, its device and its resolved precision.
        fold: Fold BatchNorm and fuse the ReLUs (off when intermediate layers are read, as in `embed`, where
            `conv*` should stay the convolution's own output).
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
            if fold or self.dtype != torch.float32:
                model = inference_form(model, self.dtype, self.device, fold, fuse=not self.compiled)
            else:
                model = inference_ready(model, self.device)  # a copy, if the model is the caller's and not ready
        self.model = model
        self._forward = torch.compile(model, dynamic=False) if self.compiled else model

    def prepare_input(self, images: torch.Tensor) -> torch.Tensor:
        return inference_input(images, self.device, self.dtype)

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
