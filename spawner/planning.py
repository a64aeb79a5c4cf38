"""How a policy plan becomes KubeSpawner's settings and the user's home claim.

A mixin of :class:`~sovereign_hub.spawner.SovereignSpawner`; its settings are the spawner's
(``c.SovereignSpawner.home_size``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kubernetes_asyncio.client.exceptions import ApiException
from traitlets import Bool, Enum, List, Unicode
from traitlets.config import Configurable

from sovereign_hub.policy import PodPlan, PolicyError, cached_policy

from .overlay import Home, plan_traits
from .pvc import home_claim_name, make_home_pvc
from .transient import retry_transient

OWNER_ANNOTATION = "hub.jupyter.org/username"
SERVER_ANNOTATION = "hub.jupyter.org/servername"
"""KubeSpawner's annotations on every claim it creates: whose, and which server's."""


class PlanTraits(Configurable):
    if TYPE_CHECKING:
        # What it uses of the spawner it is mixed into: KubeSpawner's and SovereignSpawner's.
        user: Any
        name: str
        log: logging.Logger
        api: Any
        namespace: str
        k8s_api_request_retry_timeout: int
        _log_name: str
        _baseline: dict[str, Any]
        _spawn_baseline: dict[str, Any] | None
        policy_file: str

        async def use_cluster(self, region: str, cluster: Any, *, probe: bool) -> None: ...

        def _expand_user_properties(self, template: str, slug_scheme: Any = None) -> str: ...
        def _build_common_labels(self, extra_labels: dict[str, str]) -> dict[str, str]: ...

    home_mount_path = Unicode(
        "/home/jovyan",
        config=True,
        help="Where the user's home volume (one per region) is mounted in the notebook container.",
    )
    home_size = Unicode(
        "10Gi",
        config=True,
        help="""Size requested for a new home volume, as a Kubernetes quantity.
        Existing volumes are not resized.""",
    )
    home_access_modes = List(
        ["ReadWriteOnce"],
        config=True,
        help="Access modes of new home volumes.",
    )
    home_storage = Enum(
        ["dynamic", "none"],
        "dynamic",
        config=True,
        help="""What the home directory is. ``dynamic`` (default): a PersistentVolumeClaim
        per user and region, in the region's storage class, created on the first spawn
        there. ``none``: no claim; the home is an emptyDir that is lost when the server
        stops (Zero to JupyterHub's ``singleuser.storage.type: none``).""",
    )

    delete_adopted_claims = Bool(
        False,
        config=True,
        help="""Whether deleting a user (or a named server) from the hub also deletes the
        claim adopted as their home (a region's ``adoptClaims``, e.g. Zero to JupyterHub's
        ``claim-<user>``). Off (default): it is kept, like every ``home-<user>-<region>``
        claim, and the hub logs that it kept it. On: it is deleted, from the adopting
        region's cluster, but only when KubeSpawner's annotations on it name this user and
        server. KubeSpawner's own ``delete_pvc`` is not used: it would delete whatever claim
        its ``pvc_name_template`` names, which is the adopted one by coincidence of names.""",
    )

    async def delete_forever(self) -> None:
        """JupyterHub calls this once the user or named server is deleted: homes are kept,
        and an adopted one is deleted only with ``delete_adopted_claims`` (see there)."""
        if not self.delete_adopted_claims:
            self.log.info(
                "%s deleted: keeping the home volumes, adopted ones included "
                "(delete_adopted_claims is off)",
                self._log_name,
            )
            return
        try:
            policy = cached_policy(self.policy_file).policy
        except PolicyError as exc:
            self.log.error("not deleting adopted claims of %s: %s", self._log_name, exc)
            return
        for name, region in policy.regions.items():
            if not region.adopt_claims:
                continue
            await self.use_cluster(name, region.cluster, probe=False)
            claim = await self.adopted_claim(region.adopt_claims)
            if claim is None:
                continue

            async def delete(claim: str = claim) -> None:
                try:
                    await self.api.delete_namespaced_persistent_volume_claim(claim, self.namespace)
                except ApiException as exc:
                    if exc.status != 404:
                        raise

            await retry_transient(
                delete,
                what=f"deleting the adopted claim {claim}",
                timeout=self.k8s_api_request_retry_timeout,
            )
            self.log.info("%s deleted: deleted the adopted claim %s", self._log_name, claim)

    def apply_plan(self, plan: PodPlan, claim_name: str | None = None) -> Home:
        """Set KubeSpawner's traits for ``plan``; return the home volume it mounts: the claim
        ``claim_name`` (an adopted one), the user's home claim in the plan's region, or none
        (an emptyDir) when ``home_storage`` is ``none``."""
        if self.home_storage == "none":
            claim = ""
        else:
            claim = claim_name or home_claim_name(self.user.name, plan.region)
        home = Home(claim, self.home_mount_path)
        baseline = self._baseline if self._spawn_baseline is None else self._spawn_baseline
        self._apply_traits(plan_traits(plan, baseline, home))
        return home

    async def adopted_claim(self, template: str | None) -> str | None:
        """The name of the user's existing claim that ``template`` (a region's
        ``adoptClaims``) names, expanded as KubeSpawner expands its own names; None when
        the region adopts nothing, homes are not kept (``home_storage`` ``none``), no such
        claim exists in the current namespace, or it is not this user's server's.

        Names alone can collide across KubeSpawner versions (``claim-{username}{servername}``
        is ``claim-anabob`` for ana's server ``bob`` and for a user ``anabob``), so a claim is
        adopted only when KubeSpawner's own annotations on it name this user and server.
        """
        if not template or self.home_storage == "none":
            return None
        name = self._expand_user_properties(template)

        async def read() -> dict[str, str] | None:
            try:
                claim = await self.api.read_namespaced_persistent_volume_claim(name, self.namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            return dict(claim.metadata.annotations or {})

        what = f"looking for the existing claim {name}"
        found = await retry_transient(read, what=what, timeout=self.k8s_api_request_retry_timeout)
        if found is None:
            return None
        owner, server = found.get(OWNER_ANNOTATION), found.get(SERVER_ANNOTATION, "")
        if owner != self.user.name or server != self.name:
            self.log.warning(
                "not adopting claim %s for %s: it belongs to user %r, server %r",
                name, self._log_name, owner, server,
            )  # fmt: skip
            return None
        return name

    def home_claim(self, plan: PodPlan, home: Home) -> dict[str, Any] | None:
        """The PersistentVolumeClaim of ``home``, created unless it exists; None without one."""
        if not home.claim_name:
            return None
        return make_home_pvc(
            name=home.claim_name,
            username=self.user.name,
            region=plan.region,
            storage_class=plan.storage_class,
            size=self.home_size,
            access_modes=tuple(self.home_access_modes),
            labels=self._build_common_labels({}),
        )

    def _apply_traits(self, values: dict[str, Any]) -> None:
        # Every managed trait is given its value for this plan; one that already
        # holds it is left alone, sparing traitlets' validation and observers.
        for name, value in values.items():
            if getattr(self, name) != value:
                setattr(self, name, value)
