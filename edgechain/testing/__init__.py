"""Code for testing code that uses edgechain (not used by the chain, contract or service layers).

- :mod:`edgechain.testing.models`: where the stories260K files are (the one model locator) and
  :class:`~edgechain.testing.models.ModelFiles`, a checkpoint and tokenizer on disk.
- :mod:`edgechain.testing.pytest_plugin`: the pytest fixtures (entry point ``pytest11``).
- :mod:`edgechain.testing.weight_server`: a loopback HTTP server of weights, with fault injection.
- :mod:`edgechain.testing.synth`: deterministic synthetic checkpoints and tokenizers.
"""
