"""SovereignSpawner: applies a policy decision onto KubeSpawner (issue #4)."""
