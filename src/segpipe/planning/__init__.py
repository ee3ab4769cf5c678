"""``segpipe plan``: a dataset fingerprint, explicit planning rules and a planned config.

- :mod:`~segpipe.planning.structures`: the connected structures of one mask (area, shorter
  bounding-box side, width);
- :mod:`~segpipe.planning.fingerprint`: reads a dataset once, with the remap step's own readers
  and checks, into a JSON-ready fingerprint (no torch);
- :mod:`~segpipe.planning.rules`: small pure functions from the fingerprint (and the target
  device) to each planned option, each with the figure it came from (docs/planning.md);
- :mod:`~segpipe.planning.probe`: the batch-size probe, forward and backward at the planned size
  (imports torch in the process that measures);
- :mod:`~segpipe.planning.render`: the planned config as commented YAML, and its checks;
- :mod:`~segpipe.planning.planner`: the steps in order, for ``segpipe plan``.
"""
