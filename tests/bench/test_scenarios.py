import numpy as np
import pytest

from heptathlon.bench.errors import ScenarioError
from heptathlon.bench.scenarios import build_schedule, make_scenario


def test_single_stream_order_is_fixed_and_seeded():
    a = build_schedule(make_scenario("single_stream"), 50)
    b = build_schedule(make_scenario("single_stream"), 50)
    c = build_schedule(make_scenario("single_stream", seed=1), 50)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert [x.tolist() for x in a] != [x.tolist() for x in c]
    assert sorted(int(x[0]) for x in a) == list(range(50))


def test_fixed_batch_has_exact_sizes():
    sched = build_schedule(make_scenario("fixed_batch", batch_size=8), 50)
    assert {len(q) for q in sched} == {8}
    assert set(np.concatenate(sched).tolist()) == set(range(50))


def test_offline_is_one_pass():
    sched = build_schedule(make_scenario("offline"), 30)
    assert len(sched) == 1 and sorted(sched[0].tolist()) == list(range(30))


@pytest.mark.parametrize("kwargs,msg", [
    ({"name": "warp_speed"}, "unknown scenario 'warp_speed'"),
    ({"name": "single_stream", "min_duration_s": 10, "max_duration_s": 5}, "min_duration_s .* is above max_duration_s"),
    ({"name": "fixed_batch", "batch_size": 0}, "batch_size must be >= 1"),
    ({"name": "single_stream", "batch_size": 4}, "one instance per query"),
])
def test_impossible_settings_rejected(kwargs, msg):
    with pytest.raises(ScenarioError, match=msg):
        make_scenario(**kwargs)
