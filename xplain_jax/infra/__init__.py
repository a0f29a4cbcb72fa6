"""Low machinery that knows nothing of the method: checkpoints (``checkpoint``), devices and
sharding (``parallel``) and the persistent compilation cache (``compile_cache``)."""
