"""edgechain: a Linera-style contract/service simulator for machine learning at the edge.

Sub-packages, each mapped from a top-level folder of the repository:

- ``edgechain.chain``: blocks, validators, certificates, storage.
- ``edgechain.contract``: the model-registry application's contract (deterministic).
- ``edgechain.service``: the service runtime (fetch_url, hash checks, seeds, the engine host).
"""

from edgechain.errors import EdgechainError

__all__ = ["EdgechainError", "__version__"]
__version__ = "0.1.0"
