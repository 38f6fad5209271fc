"""hunkwise's model side: git history -> records -> LoRA adapters -> evaluation, and the
engine that runs the adapters. Never imports ``server``."""

__version__ = "0.1.0"
