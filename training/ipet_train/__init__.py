"""ipet_train: iPET discriminators, generators, the adversarial training loop and ONNX export."""

__version__ = "0.1.0"
