"""SovereignSpawner: applies a policy decision onto KubeSpawner.

Registered as the ``sovereign`` spawner: ``c.JupyterHub.spawner_class = "sovereign"``.
"""

from .spawner import SovereignSpawner, SpawnRefused

__all__ = ["SovereignSpawner", "SpawnRefused"]
