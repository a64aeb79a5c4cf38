"""SovereignSpawner: the policy's decision, applied onto KubeSpawner.

KubeSpawner keeps doing what it does well (reflectors, pod creation, events,
progress, stop). This adapter only:

1. reads and checks ``user_options`` (:mod:`.options`);
2. asks :func:`sovereign_hub.policy.decide` for a plan, holding GPU quota
   atomically (:mod:`.quota`);
3. sets KubeSpawner's traits from the plan (:mod:`.overlay`), ensures the
   user's home volume in that region (:mod:`.pvc`), and refuses pods that
   break the restricted Pod Security Standard (:mod:`.security`);
4. keeps the user's image pins in the spawner's persisted state;
5. reports every step through a :class:`~sovereign_hub.reporting.Reporter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import inspect
import time
from datetime import UTC, datetime
from typing import Any

from kubespawner import KubeSpawner
from traitlets import Instance, Unicode, default, validate

from sovereign_hub import logscrub
from sovereign_hub.identity import identity_from
from sovereign_hub.policy import (
    Denied,
    Identity,
    Pin,
    PodPlan,
    Policy,
    PolicyError,
    cached_policy,
)
from sovereign_hub.refusals import SpawnRefused
from sovereign_hub.reporting import (
    AuditUnavailable,
    LogReporter,
    Reporter,
    SessionEvent,
    SessionEventKind,
    recordable_request,
)

from . import (
    activecount,
    quotametrics,  # noqa: F401 (exports the GPU ledger on /hub/metrics)
)
from .activecount import ActiveCounting
from .allocating import AllocationTracking
from .clusters import RegionalClusters, cluster_of
from .crashloop import CrashWatching
from .entry import RegionalEntry
from .form import form_context, render_form
from .logsecrets import SecretsOutOfLogs
from .options import OptionsError, options_from_form, parse_user_options
from .overlay import MANAGED_TRAITS, mount_records
from .planning import PlanTraits
from .podevents import IndexedEvents
from .pvc import ensure_claim
from .queueing import GpuQueueing
from .quota import SHARED, GpuLedger
from .readiness import ReadinessProbing
from .request import (
    contact_of,
    refusal_message,
    spawn_refused,
    spawn_request,
    timeout_message,
)
from .security import RestrictedPods
from .state import STATE_KEY, Allocation, outlook_entry, read_state, state_entry
from .transient import ApiRetries, ApiUnavailable, clear_failure
from .upgrades import STATE_FIELD as UPGRADE_FIELD
from .upgrades import NextStartUpgrade


def applied_at_start(spawner: Any, user_options: dict[str, Any]) -> None:
    """JupyterHub's ``apply_user_options`` hook: nothing to do before ``start``, where the
    policy decides on the user's options."""


class SovereignSpawner(
    ActiveCounting,
    RestrictedPods,
    ReadinessProbing,
    CrashWatching,
    GpuQueueing,
    NextStartUpgrade,
    AllocationTracking,
    RegionalEntry,
    RegionalClusters,
    ApiRetries,
    IndexedEvents,
    SecretsOutOfLogs,
    PlanTraits,
    KubeSpawner,
):
    """Spawn each user's server as the Sovereign Hub policy decides.

    Configure the policy with ``policy_file``. KubeSpawner's own settings
    (namespace, command, base labels, volumes, tolerations…) still apply and
    are combined with the plan; the settings the policy decides (image,
    resources, placement, home volume) cannot be set by users and are reset
    for every spawn. ``profile_list`` must stay empty: profiles come from the
    policy.
    """

    policy_file = Unicode(
        "/etc/sovereign-hub/policy.yaml",
        config=True,
        help="""Path of the policy document (YAML). Re-read when the file changes. A policy
        that does not pass `sovhub policy check` refuses every spawn with its problems.""",
    )
    no_access_message = Unicode(
        "None of your groups is entitled to a notebook server. Ask your platform team to add "
        "you to a group that grants notebook profiles.",
        config=True,
        help="""Shown to a user whose groups grant no profile, on the spawn page and in
        API refusals.""",
    )
    reporter = Instance(
        Reporter,
        config=True,
        help="""Receives every decision, start, failure and stop (a
        `sovereign_hub.reporting.Reporter`). Default: one log line per event. The audit
        subsystem provides one that ships events to the audit trail.""",
    )
    ledger = Instance(
        GpuLedger,
        help="GPU quota holds shared by all spawners of this hub. Replace only in tests.",
    )

    @default("reporter")
    def _default_reporter(self) -> Reporter:
        return LogReporter(self.log)

    @default("ledger")
    def _default_ledger(self) -> GpuLedger:
        return SHARED

    @default("storage_pvc_ensure")
    def _default_storage_pvc_ensure(self) -> bool:
        # Home volumes are per region, so this spawner makes them itself.
        return False

    @default("options_form")
    def _default_options_form(self) -> Any:
        return SovereignSpawner._policy_options_form

    @default("options_from_form")
    def _default_options_from_form(self) -> Any:
        return options_from_form

    @default("apply_user_options")
    def _default_apply_user_options(self) -> Any:
        # The policy reads the user's options (profile, region) at start and refuses what it
        # does not allow; JupyterHub 5.3+ would otherwise log every spawn's options as
        # "unhandled" (a thousand warnings for a thousand spawns).
        return applied_at_start

    @validate("profile_list")
    def _no_profile_list(self, proposal: Any) -> Any:
        if proposal["value"]:
            raise ValueError(
                "SovereignSpawner takes its profiles from the policy document "
                "(SovereignSpawner.policy_file); leave KubeSpawner.profile_list empty"
            )
        return proposal["value"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        logscrub.install()
        # The admin's own values of the traits a plan overrides: each spawn starts from these.
        self._baseline = {name: copy.deepcopy(getattr(self, name)) for name in MANAGED_TRAITS}
        self.install_restricted_hook()
        # This spawn's starting point when a pre_spawn_hook changed managed traits.
        self._spawn_baseline: dict[str, Any] | None = None
        self.pins: dict[str, Pin] = {}
        self.allocation: Allocation | None = None
        self._notices: list[str] = []
        self._start_failed = False
        """Whether this spawner's last start failed (its pod, if any, is then deleted)."""

    # -- inputs ------------------------------------------------------------
    def policy(self) -> Policy:
        try:
            loaded = cached_policy(self.policy_file)
        except PolicyError as exc:
            self.log.error("policy %s cannot be used:\n%s", self.policy_file, exc)
            raise SpawnRefused(
                500,
                "The hub's policy cannot be used (missing or invalid); ask your administrator "
                f"to run `sovhub policy check`. {exc.problems[0].render(exc.file)}",
            ) from None
        self.reporter.policy_seen(str(self.policy_file), loaded.sha256)
        return loaded.policy

    async def identity(self) -> Identity:
        auth_state = await self.user.get_auth_state()
        return identity_from(self.user.name, [g.name for g in self.user.groups], auth_state)

    @property
    def _key(self) -> tuple[str, str]:
        return (self.user.name, self.name)

    def _report(self, kind: SessionEventKind, *, required: bool = False, **fields: Any) -> None:
        """Report an event. When ``required`` and the audit trail fails closed, refuse (503)."""
        event = SessionEvent(kind=kind, user=self.user.name, server=self.name, **fields)
        try:
            self.reporter.report(event)
        except AuditUnavailable as exc:
            if required:
                raise SpawnRefused(503, str(exc)) from None
            self.log.error("audit trail refused %s for %s: %s", kind, self._log_name, exc)
        except Exception:
            self.log.exception("reporting %s for %s failed", kind, self._log_name)

    # -- the spawn form ------------------------------------------------------
    async def _policy_options_form(self) -> str:
        # Not named after KubeSpawner's _render_options_form(profile_list): shadowing it with
        # another signature would break any KubeSpawner code path that still calls it.
        identity = await self.identity()
        context = form_context(
            identity,
            self.policy(),
            self.pins,
            self.ledger.usage(),
            datetime.now(UTC),
            self.no_access_message,
            last_profile=(self.user_options or {}).get("profile"),
        )
        context.update(
            contact=contact_of(self.authenticator), logout_url=f"{self.hub.base_url}logout"
        )
        return render_form(context)

    async def load_user_options(self) -> None:
        """Options were applied by the policy decision in :meth:`start`; KubeSpawner's own
        profile handling must not reinterpret them."""

    # -- lifecycle -------------------------------------------------------------
    def run_pre_spawn_hook(self) -> Any:
        """Run the admin's ``pre_spawn_hook`` on the admin's own values of the managed traits.

        The hook then sees no setting of an earlier plan, and what it adds (an environment
        variable, a volume, a label) is kept under this spawn's plan instead of being reset.
        """
        self._spawn_baseline = None
        if not self.pre_spawn_hook:
            return None
        return self._run_pre_spawn_hook()

    async def _run_pre_spawn_hook(self) -> None:
        self._apply_traits(copy.deepcopy(self._baseline))
        result = self.pre_spawn_hook(self)
        if inspect.isawaitable(result):
            await result
        self._spawn_baseline = {name: copy.deepcopy(getattr(self, name)) for name in MANAGED_TRAITS}

    def start(self) -> asyncio.Future[Any]:
        self.queue_timeout(self.policy_file)
        self._start_future = asyncio.ensure_future(self._start_with_policy())
        return self._start_future

    async def _start_with_policy(self) -> Any:
        self._notices = []
        self._start_failed = False
        sent = recordable_request(self.user_options if isinstance(self.user_options, dict) else {})
        try:
            choice = parse_user_options(self.user_options)
        except OptionsError as exc:
            self._report("spawn_denied", reasons=(("invalid_options", exc.message),), request=sent)
            raise SpawnRefused(exc.status, exc.message) from None
        identity = await self.identity()
        policy = self.policy()
        request = spawn_request(choice, identity, policy, self.pins, datetime.now(UTC))
        if request is None:
            self._report("spawn_denied", reasons=(("no_entitlement", self.no_access_message),))
            raise spawn_refused(self.no_access_message, identity, self.authenticator)
        request, dropped = self.with_upgrade_choice(request, policy)
        if dropped:
            self._notices.append(dropped)
        self._report(
            "spawn_requested",
            required=True,
            profile=request.profile,
            region=choice.region,
            cluster=cluster_of(policy, choice.region),
            request=sent,
        )
        decision = await self.admit(identity, request, policy)
        if isinstance(decision, Denied):
            reasons = tuple((r.code, r.message) for r in decision.reasons)
            self._report(
                "spawn_denied", profile=request.profile, region=choice.region, reasons=reasons
            )
            message = refusal_message(decision, identity, self.no_access_message)
            raise spawn_refused(message, identity, self.authenticator)
        plan = decision.plan
        region = policy.regions[plan.region]
        try:
            home = self.apply_plan(plan)
            self.allocation = Allocation.of(plan, home.claim_name, time.time(), region.cluster_name)
            await self.use_cluster(plan.region, region.cluster, probe=True)
            if adopted := await self.adopted_claim(region.adopt_claims):
                home = self.apply_plan(plan, adopted)
                self.allocation = dataclasses.replace(self.allocation, home=adopted)
            if plan.image.notice:
                self._notices.append(plan.image.notice)
            if claim := self.home_claim(plan, home):
                await ensure_claim(
                    self.api, self.namespace, claim, self.k8s_api_request_retry_timeout
                )
            url = await asyncio.wait_for(
                self.until_crashed(super().start), timeout=self._own_start_timeout * 0.95
            )
        except asyncio.CancelledError:
            self._spawn_failed(plan, "cancelled")
            raise
        except TimeoutError:
            if unanswered := self.unanswered_create(plan.region, region.cluster_name):
                self._spawn_failed(plan, str(unanswered))
                raise unanswered from None
            message = timeout_message(self._own_start_timeout, self.events)
            self._spawn_failed(plan, message)
            raise TimeoutError(message) from None
        except Exception as exc:
            failure = clear_failure(exc, "starting the server", plan.region)
            self._spawn_failed(plan, str(failure) or type(exc).__name__)
            # Only an unavailable API server's cause is worth chaining: an API server's
            # refusal carries its whole answer (the pod's values) in its text.
            raise failure from (exc if isinstance(failure, ApiUnavailable) else None)
        self._record_pin(plan)
        self.upgrade_pinned(plan.image.channel)
        self.waiting_room.started(self._key)
        node = (self.own_pod() or {}).get("spec", {}).get("nodeName")
        self.allocation = dataclasses.replace(self.allocation, node=node)
        self._report("server_started", **self.allocation.placement(), node=node)
        for mounted in mount_records(plan):
            # A record's keys are SessionEvent fields, never `required`: mypy cannot know.
            self._report("dataset_mounted", **mounted)  # type: ignore[arg-type]
        return url

    def _spawn_failed(self, plan: PodPlan, detail: str) -> None:
        self._start_failed = True
        self.ledger.release(self._key)
        self.waiting_room.started(self._key)
        placement = (self.allocation or Allocation.of(plan, "", 0)).placement()
        self.allocation = None
        self._report("spawn_failed", **placement, detail=detail)

    def _record_pin(self, plan: PodPlan) -> None:
        image = plan.image
        self.pins[image.channel] = image.pin
        if image.change is not None and image.change != "first":
            self._report(
                "image_pin_changed",
                channel=image.channel,
                image=image.image,
                image_version=image.version,
                previous_image=image.previous.image if image.previous else None,
                detail=image.change,
            )

    async def progress(self) -> Any:
        for notice in self._notices:
            yield {"progress": 1, "message": notice}
        async for event in self.queue_progress():
            yield event
        async for event in super().progress():
            yield event

    async def poll(self) -> int | None:
        status = await super().poll()
        # A pod left by a start that failed (JupyterHub polls, then stops, after a failed
        # start) is deleted, not adopted: adopting it would report a stop of a server that
        # never started, and hold its GPUs again until then.
        if (
            status is None
            and self.allocation is None
            and self.pod_reflector
            and not self._start_failed
        ):
            self._adopt(self.own_pod())
        if status is not None and self.allocation is not None:
            self.allocation = dataclasses.replace(self.allocation, stopped="failure")
        return status

    async def stop(self, now: bool = False) -> None:
        try:
            await super().stop(now=now)
        except Exception as exc:
            # JupyterHub drops a stop's exception without a word and forgets the server. Say
            # what may be left running; its GPUs stay held, as the pod may still have them.
            self.log.error(
                "Stopping %s failed (%s): its pod %s/%s may still be running; "
                "delete it with kubectl if it is",
                self._log_name,
                type(exc).__name__,
                self.namespace,
                self.pod_name,
            )
            raise
        allocation = self.allocation
        self.ledger.release(self._key)
        self.gpu_released(allocation)
        if allocation is not None:
            self._report(
                "server_stopped",
                profile=allocation.profile,
                region=allocation.region,
                cluster=allocation.cluster,
                image=allocation.image,
                gpus=allocation.gpus,
                quota_group=allocation.quota_group,
                node=allocation.node,
                stop_reason=allocation.stopped or "unknown",
            )

    # -- persisted state -------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_state()
        state[STATE_KEY] = state_entry(self.pins, self.allocation)
        state[STATE_KEY]["queued"] = self.queue_state()
        state[STATE_KEY][UPGRADE_FIELD] = self.upgrade_state()
        with contextlib.suppress(PolicyError):  # a broken policy: no outlook, and the state is kept
            loaded = cached_policy(self.policy_file).policy
            state[STATE_KEY]["outlook"] = outlook_entry(self.pins, loaded, datetime.now(UTC))
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.pins, self.allocation = read_state(state, self.log, self._log_name)
        self.restore_queue_place((state.get(STATE_KEY) or {}).get("queued"))
        self.load_upgrade_state((state.get(STATE_KEY) or {}).get(UPGRADE_FIELD))
        self._hold_gpus()  # a running server after a hub restart: its GPUs are still held

    def clear_state(self) -> None:
        super().clear_state()
        self.allocation = None  # pins persist across servers; the allocation does not


# JupyterHub counts active servers at every spawn request; a hub of these spawners
# counts only those that can be active (spawner/activecount.py).
activecount.install()
