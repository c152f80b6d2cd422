"""VELoRA: low-rank adaptation of a frozen ViT for RGB + event-camera recognition."""

__version__ = "0.1.0"
