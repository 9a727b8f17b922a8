"""Lyra appliance: the ``lyrad`` daemon.

See ``../shared/DESIGN.md`` for the architecture. Sub-packages are one concept each:
``model`` (pure domain), ``kernels`` (numba), ``engine`` (event loop, clock), ``store``
(SQLite/apsw), ``venues``, ``marketdata``, ``strategies``, ``execution``, ``risk``,
``portfolio``, ``security``, ``server`` (gRPC edge) and ``telemetry``.
"""

__version__ = "0.1.0"
