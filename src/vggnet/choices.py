"""The values that flags choose among, free of torch so that `vggnet --help` lists them without importing it.

Each tuple is defined once, here; the module that acts on it (named beside it) imports it from here.
"""

DEVICES = ("auto", "cpu", "cuda")  # runtime.resolve_device
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # runtime.resolve_precision
AUGMENTS = ("none", "basic", "trivial")  # Preprocess.transform(train=True, augment=...)
DECODE_PLACES = ("workers", "device")  # training.setup.TrainingData (data.device_decode for "device")
CACHES = ("none", "ram")  # training.setup.TrainingData (data.dataset.ImageListDataset.keep_decoded for "ram")
REPORT_FORMATS = ("table", "json", "markdown")  # analysis.ModelSummary.render, `vggnet models`
EXPORT_FORMATS = ("onnx", "torchscript", "safetensors")  # infer.export.export
ENGINES = ("local", "ray")  # engines.verbs.run

# The batch size `vggnet eval`/`predict`/`embed` run at by default and training validates at
# (models.inference_form). Kernels may choose their algorithm by batch size, and so round differently: fp32 logits
# of one image differ by ~1e-7 between batches of 5 and 64 on an AVX2 CPU. Recorded and evaluated results agree
# exactly only when each image meets the same batch.
INFERENCE_BATCH_SIZE = 32
