"""Profile controls really take effect: cgroups (memory, quota, cpuset), affinity, threads,
RLIMIT_AS fallback, torch flags, precision, and the `profiles check` probes.

Processes that must live under a control are real subprocesses, started the way the executor
starts a worker (argv wrapped by the run cgroup, environment from control_env).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from heptathlon.bench.errors import ProfileError
from heptathlon.bench.profile import Profile, load_profile
from heptathlon.runners import controls as C
from heptathlon.runners.quantize import prepare_onnx_precision, prepare_torch_precision, quantize_onnx_int8

PY = sys.executable
MiB = 2**20
_MEM_PROBLEM = C.cgroup_problem("memory")
_CPU_PROBLEM = C.cgroup_problem("cpu")
needs_memory_cgroup = pytest.mark.skipif(_MEM_PROBLEM is not None, reason=f"memory cgroup unusable: {_MEM_PROBLEM}")
needs_cpu_cgroup = pytest.mark.skipif(_CPU_PROBLEM is not None, reason=f"cpu cgroup unusable: {_CPU_PROBLEM}")

# A child that applies the profile (as the worker does first thing) and reports what it sees.
APPLY = """
import json, os, sys
from heptathlon.bench.profile import Profile
from heptathlon.runners.controls import apply_controls
p = Profile.model_validate_json(sys.argv[1])
print(json.dumps({"applied": apply_controls(p), "affinity": sorted(os.sched_getaffinity(0))}))
"""
# A child that writes (not just reserves) N MiB in 8 MiB chunks.
ALLOCATE = """
import sys
held = [b"\\x01" * (8 << 20) for _ in range(int(sys.argv[2]) // 8)]
print("survived", len(held))
"""


def _profile(**kw) -> Profile:
    return Profile(name="test-profile", **kw)


@pytest.fixture
def run_cgroup():
    handles = []

    def make(profile: Profile, run_id: str = "pytest") -> C.CgroupHandle:
        h = C.create_run_cgroup(run_id, profile)
        handles.append(h)
        return h

    yield make
    for h in handles:
        h.cleanup()


@pytest.fixture
def thread_vars(monkeypatch):
    """In-process apply_controls sets thread variables it finds missing; keep that local."""
    for k in C.THREAD_VARS:
        monkeypatch.setenv(k, "1")


def _spawn(handle: C.CgroupHandle | None, profile: Profile, code: str, *args: str) -> subprocess.CompletedProcess:
    argv = [PY, "-c", code, profile.model_dump_json(), *args]
    env = {**os.environ, **C.control_env(profile)}
    if handle is not None:
        argv = handle.wrap_argv(argv)
        env.update(handle.env())
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


# -- cgroups ----------------------------------------------------------------------------------

@needs_memory_cgroup
@needs_cpu_cgroup
def test_run_cgroup_holds_the_limits_and_is_removed(run_cgroup):
    h = run_cgroup(_profile(cpu={"cores": [0], "quota": 0.5}, memory_limit="64MiB"))
    assert {"memory", "cpu"} <= set(h.dirs)
    assert all(d.name.startswith("heptathlon-pytest-") for d in h.dirs.values())
    assert h.memory_limit_bytes() == 64 * MiB
    assert h.controls["cpu.quota"]["effective"] == pytest.approx(0.5)
    dirs = list(h.dirs.values())
    h.cleanup()
    assert not any(d.exists() for d in dirs)
    h.cleanup()  # idempotent


@needs_memory_cgroup
@needs_cpu_cgroup
def test_worker_in_run_cgroup_records_every_control_as_taken_effect(run_cgroup):
    p = _profile(cpu={"cores": [0], "threads": 1, "quota": 0.5}, memory_limit="256MiB")
    r = _spawn(run_cgroup(p), p, APPLY)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    applied = rep["applied"]
    assert applied["cgroup"]["owner"] == "parent"
    assert applied["cgroup"]["member"] and all(applied["cgroup"]["member"].values())
    assert rep["affinity"] == [0]
    assert applied["cpu.cores"]["took_effect"] and applied["cpu.cores"]["effective"] == [0]
    assert applied["cpu.threads"]["mechanism"] == "environment from the parent"
    assert applied["cpu.quota"] == {**applied["cpu.quota"], "requested": 0.5, "took_effect": True}
    assert applied["cpu.quota"]["mechanism"].startswith("cgroup v")
    assert applied["memory_limit"]["effective"] == 256 * MiB
    assert applied["memory_limit"]["mechanism"].startswith("cgroup v")
    assert applied["memory_limit"]["took_effect"] is True


@needs_memory_cgroup
def test_allocating_past_the_cgroup_limit_is_a_recognised_memory_limit_kill(run_cgroup):
    p = _profile(memory_limit="64MiB")
    h = run_cgroup(p)
    r = _spawn(h, p, ALLOCATE, "256")
    assert "survived" not in r.stdout
    assert r.returncode == -signal.SIGKILL
    assert h.oom_kill_count() >= 1
    assert C.memory_limit_kill_reason(p, r.returncode, r.stderr, h) == "memory limit of 64 MiB exceeded"
    assert 32 * MiB <= h.peak_memory_bytes() <= 64 * MiB


@needs_memory_cgroup
def test_peak_memory_is_read_from_the_kernel_counter(run_cgroup):
    p = _profile()  # no limit: the memory cgroup is still made, for the exact peak
    h = run_cgroup(p)
    r = _spawn(h, p, ALLOCATE, "96")
    assert r.returncode == 0 and "survived 12" in r.stdout, r.stderr
    assert h.peak_memory_bytes() >= 96 * MiB
    assert C.memory_limit_kill_reason(p, r.returncode, r.stderr, h) is None


@needs_cpu_cgroup
def test_quota_bounds_the_cpu_time_by_the_kernels_own_accounting(run_cgroup):
    p = _profile(cpu={"cores": [0], "quota": 0.2})
    h = run_cgroup(p)
    burn = "import time\nc = time.process_time()\nwhile time.process_time() - c < 0.2: pass\n" \
           "print(time.process_time() - c)"
    r = _spawn(h, p, burn)
    assert r.returncode == 0, r.stderr
    cpu_s = float(r.stdout)
    stat = h.cpu_stat()
    # CFS bandwidth control: used CPU <= quota per elapsed period (+1 for the one in progress).
    assert stat["nr_periods"] >= 1
    assert cpu_s <= (stat["nr_periods"] + 1) * 0.2 * C.CFS_PERIOD_US / 1e6


@needs_memory_cgroup
def test_worker_without_a_parent_cgroup_makes_its_own_and_stale_ones_are_removed(monkeypatch):
    monkeypatch.delenv(C.CGROUP_ENV, raising=False)
    p = _profile(memory_limit="256MiB")
    r = _spawn(None, p, APPLY)
    assert r.returncode == 0, r.stderr
    applied = json.loads(r.stdout)["applied"]
    assert applied["cgroup"]["owner"] == "worker"
    assert applied["memory_limit"]["took_effect"] and applied["memory_limit"]["mechanism"].startswith("cgroup v")
    own = {os.path.realpath(d) for d in applied["cgroup"]["dirs"].values()}
    assert all(os.path.isdir(d) for d in own)  # the worker could not remove the cgroup it was in
    removed = {os.path.realpath(d) for d in C.cleanup_stale_run_cgroups()}
    assert own <= removed
    assert not any(os.path.exists(d) for d in own)


@needs_memory_cgroup
def test_sandboxed_worker_started_through_the_run_cgroup_sees_its_limits(run_cgroup, tmp_path):
    from heptathlon.runners.sandbox import available_mechanisms, cleanup_sandbox, sandbox_command

    if not available_mechanisms():
        pytest.skip("no sandbox mechanism works here")
    p = _profile(cpu={"cores": [0]}, memory_limit="128MiB")
    h = run_cgroup(p)
    argv, env, rec = sandbox_command([PY, "-c", APPLY, p.model_dump_json()], None,
                                     extra_env={**C.control_env(p), **h.env()})
    try:
        # The documented order: the cgroup wrapper outermost, so the sandbox inherits it.
        r = subprocess.run(h.wrap_argv(argv), env=env, cwd=rec["workdir"], capture_output=True, text=True,
                           timeout=120)
    finally:
        cleanup_sandbox(rec)
    assert r.returncode == 0, r.stderr
    applied = json.loads(r.stdout)["applied"]
    assert rec["active"] and applied["cgroup"]["member"]["memory"] is True
    assert applied["memory_limit"]["took_effect"] and applied["memory_limit"]["mechanism"].startswith("cgroup v")
    assert applied["cpu.cores"]["effective"] == [0]


# -- fallbacks and refusals ---------------------------------------------------------------------

def test_rlimit_as_fallback_limits_memory_and_the_failure_is_recognised():
    p = _profile(memory_limit="512MiB")
    code = APPLY.replace("apply_controls(p)", "apply_controls(p, use_cgroups=False)") + ALLOCATE.split("\n", 2)[2]
    r = _spawn(None, p, code, "1024")
    assert r.returncode != 0
    assert "survived" not in r.stdout
    assert "MemoryError" in r.stderr
    rec = json.loads(r.stdout.splitlines()[0])["applied"]["memory_limit"]
    assert rec["mechanism"] == "RLIMIT_AS" and rec["effective"] == 512 * MiB and rec["took_effect"]
    assert C.memory_limit_kill_reason(p, r.returncode, r.stderr) == "memory limit of 512 MiB exceeded"


def test_quota_without_cgroups_raises_naming_profile_and_field(thread_vars):
    with pytest.raises(ProfileError, match=r"profile 'test-profile': field 'cpu.quota'"):
        C.apply_controls(_profile(cpu={"quota": 0.5}), use_cgroups=False)


def test_quota_listed_as_best_effort_is_recorded_as_not_taken_effect(thread_vars):
    applied = C.apply_controls(_profile(cpu={"quota": 0.5}, best_effort=["cpu.quota"]), use_cgroups=False)
    assert applied["cpu.quota"]["took_effect"] is False
    assert "cgroup" in applied["cpu.quota"]["reason"]


def test_missing_core_is_refused_before_and_inside_the_worker(thread_vars):
    p = _profile(cpu={"cores": [4095]})
    with pytest.raises(ProfileError, match=r"'test-profile': field 'cpu.cores': cores \[4095\]"):
        C.validate_profile_for_machine(p)
    before = os.sched_getaffinity(0)
    with pytest.raises(ProfileError, match="field 'cpu.cores'"):
        C.apply_controls(p, use_cgroups=False)
    lax = _profile(cpu={"cores": [4095]}, best_effort=["affinity"])  # the old alias still works
    C.validate_profile_for_machine(lax)
    assert C.apply_controls(lax, use_cgroups=False)["cpu.cores"]["took_effect"] is False
    assert os.sched_getaffinity(0) == before


def test_cuda_profile_on_a_machine_without_gpu_is_refused_naming_the_device(monkeypatch):
    import heptathlon.bench.fingerprint

    monkeypatch.setattr(heptathlon.bench.fingerprint, "count_nvidia_gpus", lambda: (0, "NVML: no driver"))
    with pytest.raises(ProfileError, match=r"profile 'cuda-fp16': field 'device': 'cuda' needs an NVIDIA GPU"):
        C.validate_profile_for_machine(load_profile("cuda-fp16"))
    monkeypatch.setattr(heptathlon.bench.fingerprint, "count_nvidia_gpus", lambda: (1, "1 GPU(s)"))
    C.validate_profile_for_machine(load_profile("cuda-tf32"))
    with pytest.raises(ProfileError, match="field 'gpu.index'"):
        C.validate_profile_for_machine(_profile(device="cuda", gpu={"index": 3}))


def test_this_machine_refuses_cuda_profiles_when_it_has_no_gpu():
    from heptathlon.bench.fingerprint import count_nvidia_gpus

    if count_nvidia_gpus()[0]:
        pytest.skip("this machine has a GPU")
    with pytest.raises(ProfileError, match=r"'cuda-tf32': field 'device'"):
        C.validate_profile_for_machine(load_profile("cuda-tf32"))


def test_fp16_on_cpu_is_refused():
    with pytest.raises(ProfileError, match="field 'precision': fp16 runs on device: cuda only"):
        C.validate_profile_for_machine(_profile(precision="fp16"))


def test_memory_limit_kill_reason_tells_limit_kills_from_other_failures():
    p = _profile(memory_limit="512MiB")
    assert C.memory_limit_kill_reason(p, 1, "Traceback ...\nMemoryError\n") == "memory limit of 512 MiB exceeded"
    assert C.memory_limit_kill_reason(p, -6, "terminate called after throwing an instance of 'std::bad_alloc'")
    assert C.memory_limit_kill_reason(p, 1, "ValueError: bad input") is None
    assert C.memory_limit_kill_reason(p, -9, "") is None  # a SIGKILL alone may be a timeout
    assert C.memory_limit_kill_reason(p, 0, "MemoryError") is None
    assert C.memory_limit_kill_reason(_profile(), 1, "MemoryError") is None
    assert [C.format_size(n) for n in (512 * MiB, 2 * 2**30, 1536 * MiB, 100)] == \
        ["512 MiB", "2 GiB", "1536 MiB", "100 B"]


def test_control_env_sets_threads_and_hides_other_gpus():
    env = C.control_env(load_profile("cpu-2core"))
    assert env["OMP_NUM_THREADS"] == "2" and env["MKL_NUM_THREADS"] == "2"
    assert "CUDA_VISIBLE_DEVICES" not in env
    cuda = C.control_env(_profile(device="cuda", gpu={"index": 1}))
    assert cuda["CUDA_VISIBLE_DEVICES"] == "1" and cuda["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_torch_controls_in_a_fresh_worker():
    p = _profile(cpu={"threads": 1, "interop_threads": 1}, runtime={"torch": {"deterministic": True}})
    code = ("import json, sys, torch\nfrom heptathlon.bench.profile import Profile\n"
            "from heptathlon.runners.controls import apply_torch_controls\n"
            "p = Profile.model_validate_json(sys.argv[1])\nrec = apply_torch_controls(p)\n"
            "print(json.dumps({'rec': rec, 'threads': torch.get_num_threads(),"
            " 'det': torch.are_deterministic_algorithms_enabled()}))")
    r = _spawn(None, p, code)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["threads"] == 1 and rep["rec"]["cpu.threads"]["took_effect"]
    assert rep["det"] is True and rep["rec"]["runtime.torch.deterministic"]["took_effect"]
    assert "gpu.tf32" not in rep["rec"]  # CUDA controls apply to CUDA profiles only


# -- precision ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """A small torch MLP and its ONNX export (nn.Linear exports as Gemm)."""
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4)).eval()
    path = tmp_path_factory.mktemp("mlp") / "model.onnx"
    torch.onnx.export(module, (torch.randn(2, 16),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True)
    x = np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32)
    return module, path, x


def test_int8_quantizes_the_submitted_model_and_changes_its_numerics(mlp, tmp_path):
    import onnxruntime as ort

    _, path, x = mlp
    q, rec = prepare_onnx_precision(path, "int8", tmp_path / "cache", profile_name="cpu-1core-int8")
    assert rec["took_effect"] and rec["quantized_nodes"] > 0 and rec["cache_hit"] is False
    assert rec["artifact_sha256"] != rec["source_sha256"]
    fp32 = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    int8 = ort.InferenceSession(str(q)).run(None, {"x": x})[0]
    assert not np.array_equal(fp32, int8)  # really different numerics...
    assert np.allclose(fp32, int8, atol=0.2)  # ...of the same weights
    again, rec2 = quantize_onnx_int8(path, tmp_path / "cache")
    assert again == q and rec2["cache_hit"] is True and rec2["artifact_sha256"] == rec["artifact_sha256"]


def test_bf16_casts_a_torch_model_and_changes_its_numerics(mlp):
    import copy

    import torch

    module, _, x = mlp
    ref = module(torch.from_numpy(x)).detach().numpy()
    m, dtype, rec = prepare_torch_precision(copy.deepcopy(module), "bf16", "cpu")
    assert dtype == torch.bfloat16 and rec["took_effect"] and rec["input_dtype"] == "bfloat16"
    assert all(p.dtype == torch.bfloat16 for p in m.parameters())
    with torch.inference_mode():
        out = m(torch.from_numpy(x).to(dtype))
    assert out.dtype == torch.bfloat16
    out = out.float().numpy()
    assert not np.array_equal(ref, out)
    assert np.allclose(ref, out, atol=0.1)


def test_precisions_a_runtime_cannot_do_are_refused_or_recorded(mlp, tmp_path):
    import copy

    module, path, _ = mlp
    with pytest.raises(ProfileError, match="profile 'p': field 'precision': fp16 runs on device: cuda only"):
        prepare_torch_precision(copy.deepcopy(module), "fp16", "cpu", profile_name="p")
    qmod, dtype, rec = prepare_torch_precision(copy.deepcopy(module), "int8", "cpu")  # torch dynamic quantization
    assert rec["took_effect"] and "quantize_dynamic" in rec["mechanism"] and str(dtype) == "torch.float32"
    assert any("quantized" in type(m).__module__ for m in qmod.modules())
    with pytest.raises(ProfileError, match="field 'precision': int8 needs an eager torch module"):
        import torch
        prepare_torch_precision(torch.jit.script(copy.deepcopy(module)), "int8", "cpu")
    with pytest.raises(ProfileError, match="field 'precision': bf16 is not supported for ONNX"):
        prepare_onnx_precision(path, "bf16", tmp_path)
    same, rec = prepare_onnx_precision(path, "bf16", tmp_path, best_effort=True)
    assert same == path and rec["took_effect"] is False and rec["effective"] == "fp32"


def test_int8_of_a_model_without_quantizable_ops_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), tmp_path / "r.onnx")
    with pytest.raises(ProfileError, match="field 'precision': the model has no operator"):
        prepare_onnx_precision(tmp_path / "r.onnx", "int8", tmp_path / "cache")


# -- `profiles check` -------------------------------------------------------------------------

@needs_memory_cgroup
@needs_cpu_cgroup
def test_check_profile_shows_each_control_holding():
    from heptathlon.runners.probe import check_profile

    p = _profile(cpu={"cores": [0], "threads": 1, "quota": 0.5}, memory_limit="256MiB", precision="bf16")
    results = {r.control: r for r in check_profile(p, spin_s=0.5)}
    assert results["cpu.cores"].ok is True and results["cpu.cores"].observed == [0]
    assert results["cpu.threads"].ok is True
    assert results["cgroup"].ok is True
    assert results["precision"].ok is True and results["precision"].observed == "bf16"
    mem = results["memory_limit"]
    assert mem.ok is True and "memory limit of 256 MiB exceeded" in mem.detail
    assert mem.observed["outcome"] == "killed by SIGKILL" and mem.observed["oom_kills"] >= 1
    quota = results["cpu.quota"]
    assert quota.ok is True  # CPU time within quota x periods, by the kernel's accounting
    assert quota.observed["throughput_ratio"] > 0 and quota.observed["nr_periods"] >= 1  # the ratio is data
    assert results["sandbox"].observed["secret_env_visible"] is False
