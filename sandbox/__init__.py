"""Running untrusted generated code and its tests: contract, backends, pool, in-sandbox harness.

What it is: ``Job``/``Limits``/``Result`` and the ``Sandbox`` protocol (sandbox.protocol), the
bubblewrap backend (the default), the weaker opt-in ``rlimit`` backend, the E2B backend
(sandbox.e2b, imported only when used) and the fork-server harness that proves a pass.
What it is not: a stage; plugins/sandbox_local.py and plugins/sandbox_e2b.py wrap these.
"""

from sandbox.protocol import Job, Limits, Result, Sandbox, Status

__all__ = ["Job", "Limits", "Result", "Sandbox", "Status"]
