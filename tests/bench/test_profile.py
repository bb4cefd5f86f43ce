"""Hardware profile files: every shipped profile loads, and the controls it asks for parse."""

from __future__ import annotations

import pytest

from heptathlon.bench.errors import ProfileError
from heptathlon.bench.profile import (
    BEST_EFFORT_FIELDS,
    PROFILES_DIR,
    Profile,
    list_profiles,
    load_profile,
    load_profile_file,
    parse_size_bytes,
)


def test_every_shipped_profile_loads_and_is_named_after_its_file():
    profiles = list_profiles()
    names = {p.name for p in profiles}
    assert {"cpu-1core", "cpu-2core", "cpu-1core-int8", "cpu-1core-bf16", "cpu-halfcore", "cpu-1core-512m",
            "cuda-fp16", "cuda-tf32"} <= names
    assert len(names) == len(list(PROFILES_DIR.glob("*.yaml")))


@pytest.mark.parametrize("name, check", [
    ("cpu-1core-int8", lambda p: p.precision == "int8" and p.device == "cpu" and not p.default),
    ("cpu-1core-bf16", lambda p: p.precision == "bf16" and p.device == "cpu" and not p.default),
    ("cpu-halfcore", lambda p: p.cpu.quota == 0.5 and p.cpu.cores == [0]),
    ("cpu-1core-512m", lambda p: p.memory_limit_bytes == 512 * 2**20 and p.cpu.cores == [0]),
    ("cuda-fp16", lambda p: p.device == "cuda" and p.precision == "fp16" and not p.gpu.tf32 and not p.default),
    ("cuda-tf32", lambda p: p.device == "cuda" and p.precision == "fp32" and p.gpu.tf32 and not p.default),
])
def test_new_profiles_ask_for_what_their_names_say(name, check):
    assert check(load_profile(name))


def test_default_set_stays_cpu_only():
    from heptathlon.bench.profile import default_profiles

    assert all(p.device == "cpu" for p in default_profiles())


def test_unknown_best_effort_control_is_an_error_naming_the_field(tmp_path):
    path = tmp_path / "lax.yaml"
    path.write_text("name: lax\nbest_effort: [cpu.quoat]\n")
    with pytest.raises(ProfileError, match=r"lax.yaml: field 'best_effort': .*unknown control"):
        load_profile_file(path)


def test_best_effort_accepts_field_names_and_short_aliases():
    p = Profile(name="lax", best_effort=["affinity", "memory_limit"])
    assert p.allows_best_effort("cpu.cores") and p.allows_best_effort("memory_limit")
    assert not p.allows_best_effort("cpu.quota")
    assert all(Profile(name="x", best_effort=[f]).allows_best_effort(f) for f in BEST_EFFORT_FIELDS)


def test_sizes_and_spec_hash():
    assert parse_size_bytes("512MiB") == 512 * 2**20 and parse_size_bytes("2GiB") == 2**31
    with pytest.raises(ValueError):
        parse_size_bytes("lots")
    a, b = load_profile("cpu-1core"), load_profile("cpu-1core-512m")
    assert a.spec_hash == load_profile("cpu-1core").spec_hash and a.spec_hash != b.spec_hash
