"""Enforcement of a hardware profile's controls, before the model loads.

Every control records what was requested, what is in effect, by which mechanism and whether
it took effect, so a result says exactly under which conditions it was measured. A control
that cannot be applied raises ProfileError naming the profile and the field, unless the
profile lists the field in ``best_effort``.

Who does what (see docs/profiles.md):

- parent, before spawning: ``validate_profile_for_machine``, then ``create_run_cgroup`` and
  ``control_env``; the worker's argv goes through ``CgroupHandle.wrap_argv`` so the worker
  is inside its cgroup before its first instruction runs;
- worker, before loading the model: ``apply_controls`` (affinity, threads, and a check that
  the cgroup limits really hold for this process), then ``apply_torch_controls`` or
  ``ort_session_options`` once the runtime is imported;
- parent, after the worker exits: ``CgroupHandle.peak_memory_bytes``,
  ``memory_limit_kill_reason``, ``CgroupHandle.cleanup``.

Cgroups: v2 where the unified hierarchy has the controller, else v1 (this project's machines
mount v1 for memory/cpu/cpuset and an empty v2). A run's cgroup is created inside the
caller's own cgroup, so limits set by whoever started the harness still apply on top.
"""

from heptathlon.runners.controls.apply import apply_controls
from heptathlon.runners.controls.cgroups import (
    CgroupHandle, cgroup_problem, cleanup_stale_run_cgroups, create_run_cgroup,
)
from heptathlon.runners.controls.common import CFS_PERIOD_US, CGROUP_ENV, CGROUP_PREFIX, THREAD_VARS, format_size
from heptathlon.runners.controls.env import (
    control_env, gpu_env, memory_limit_kill_reason, thread_env, validate_profile_for_machine,
)
from heptathlon.runners.controls.runtime import (
    apply_torch_controls, apply_torch_threads, ort_session_options, torch_device,
)

__all__ = [
    "CFS_PERIOD_US", "CGROUP_ENV", "CGROUP_PREFIX", "CgroupHandle", "THREAD_VARS", "apply_controls",
    "apply_torch_controls", "apply_torch_threads", "cgroup_problem", "cleanup_stale_run_cgroups",
    "control_env", "create_run_cgroup", "format_size", "gpu_env", "memory_limit_kill_reason",
    "ort_session_options", "thread_env", "torch_device", "validate_profile_for_machine",
]
