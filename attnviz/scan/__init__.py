"""Scanning a dataset: many series through batched analyses, resumable shards, torch.distributed.

``attnviz scan`` (see :mod:`attnviz.scan.command`) is the entry point; the pieces are
:mod:`~attnviz.scan.sources` (where series come from), :mod:`~attnviz.scan.runner` (batches,
shards, ranks), :mod:`~attnviz.scan.shards` (the files), :mod:`~attnviz.scan.stats` (intervals,
null series, clusters), :mod:`~attnviz.scan.merge` (tables and summary) and
:mod:`~attnviz.scan.figures`.
"""
