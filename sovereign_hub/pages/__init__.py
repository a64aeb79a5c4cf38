"""What the hub shows a person, beyond JupyterHub's stock pages: presentation only.

Each module turns values the hub already has (a refusal, a spawner's
persisted state, the policy) into what a page or an API reply shows; none
decides anything. :data:`TEMPLATES` holds the JupyterHub page templates that
extend the stock ones (``{% extends "templates/<page>.html" %}``); the hub
configuration puts it after the admin's own ``template_paths``.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).with_name("templates")
"""JupyterHub ``template_paths`` entry with Sovereign Hub's page templates."""
