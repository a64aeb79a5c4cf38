# Sovereign Hub's jupyterhub_config.py. The chart mounts it with values.yaml
# (the values the hub needs, never a secret) and one file per hub.extraConfig
# snippet beside it; sovereign_hub.hubconfig maps the values to traits, then
# runs the snippets in key order, then starts the audit trail.
from sovereign_hub.hubconfig import main_config

main_config(get_config())  # noqa: F821 - provided by JupyterHub when it loads this file
