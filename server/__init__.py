"""hunkwise's editor side: a pygls language server over ``training.engine`` and
``training.review``."""
