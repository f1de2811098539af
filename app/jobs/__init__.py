"""Background jobs on Dramatiq with a Redis broker.

`broker.setup_broker(settings)` sets the process's broker and then declares the actors
(`actors`); `worker` runs them, in-process beside the API or as the `ctxgraph worker` process.
"""
