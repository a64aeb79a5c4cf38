"""SovereignSpawner: applies a policy decision onto KubeSpawner.

Registered as the ``sovereign`` spawner: ``c.JupyterHub.spawner_class = "sovereign"``.
"""

from sovereign_hub.refusals import SpawnRefused

from .spawner import SovereignSpawner

__all__ = ["SovereignSpawner", "SpawnRefused"]
