"""Model sizes for fast tests: smaller than the tiny preset, the same architecture."""

#: ``LlamaConfig`` overrides for ``training.models.build_tiny_model`` in unit tests.
SMALL_MODEL = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
}
