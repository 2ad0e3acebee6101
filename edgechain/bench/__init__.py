"""Benchmarks, one module each; they sit above every layer they measure and nothing imports them.

- ``engine``        ``edgechain bench``: load, first token, decode tok/s, peak RSS per engine
  (each measurement in a subprocess, ``engine_worker``)
- ``chain``         ``python -m edgechain.bench.chain``: blocks/s, bytes/block, reopen time
- ``cache``         ``python -m edgechain.bench.cache``: hash-check throughput of the cache
- ``query``         ``python -m edgechain.bench.query``: a service query, cold and warm
- ``story``         ``python -m edgechain.bench.story``: certifying a story vs generating it
- ``blobs``         ``python -m edgechain.bench.blobs``: publish as blobs, read back
- ``network``       the synthetic model on a fresh network that ``query`` and ``story`` measure
- ``arguments``     what their command lines share: comma-separated lists, text or JSON results
"""
