"""Architecture search with Optuna (``search.py``): the space as data, trials as train.py runs, the paper's
analysis. Modules: ``config`` (the search YAML), ``space`` (knobs -> model graphs), ``storage`` (SQLite,
PostgreSQL, journal; secrets), ``sampler``, ``pruning`` (pruner + the in-training callback), ``trial`` (one
train.py run), ``worker`` (the ask/run/tell loop), ``objectives`` (params, FLOPs, neural score), ``export``,
``status``, ``report``, ``cli``. Guide: docs/search.md.
"""
