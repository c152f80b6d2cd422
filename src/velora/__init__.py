"""velora: VELoRA, low-rank adaptation of a frozen ViT for RGB + event-camera recognition.

    import velora
    recognizer = velora.load("runs/poker/best.safetensors")
    recognizer.predict("clip_folder_or_recording.aedat4")

`load` (velora.evaluation.loading), `Recognizer` and `Prediction` (velora.evaluation.recognizer)
are imported on first use, so `import velora` (and `velora --help`) stays fast.
"""

from velora.version import __version__

__all__ = ["Prediction", "Recognizer", "__version__", "load"]


def __getattr__(name: str):
    if name == "load":
        from velora.evaluation.loading import load

        return load
    if name in ("Recognizer", "Prediction"):
        from velora.evaluation import recognizer

        return getattr(recognizer, name)
    raise AttributeError(f"module 'velora' has no attribute {name!r}")
