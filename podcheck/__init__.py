"""podcheck: pytest-driven health checks and repairs for GPU pods running ComfyUI."""
__version__ = "0.1.0"
