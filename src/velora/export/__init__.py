"""Exporting a trained model for other runtimes: `velora export` writes ONNX (velora.export.onnx)."""
