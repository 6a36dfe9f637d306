"""An emulator of the Flow Service API for destinations, for tests and `auditor demo`.

It follows `reference/destinations.yaml` for the routes it serves, runs enabled dataset-export
flows on a controllable clock, writes real export folders to real destinations, and injects the
faults the auditor must catch. Control routes live under `/emulator` (not part of Adobe's API).
"""

from __future__ import annotations
