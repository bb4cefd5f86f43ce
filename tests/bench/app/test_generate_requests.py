"""Generate requests refused before anything runs, in one line naming the folder, with one failed
run record each: a kind that cannot generate, a task without prompts, a prompt set under another
scenario."""

import pytest

from heptathlon.bench.app.service import queue_runs
from heptathlon.bench.errors import ScenarioError
from heptathlon.bench.run_status import RunStatus
from heptathlon.bench.scenarios import make_scenario
from heptathlon.db.models import Run
from heptathlon.db.session import session_scope


@pytest.mark.parametrize("example, scenario, needle", [
    ("arrests-mlp-onnx", "generate", "runs kind transformers (a causal LM folder) or kind command"),
    ("arrests-mlp-command", "generate", "needs a text task with one prompt column"),
    ("gpt2-tiny-transformers", "single_stream", "is a prompt set for generation"),
])
def test_a_request_the_generate_scenario_cannot_serve_is_refused(examples, sqlite_url, example, scenario, needle):
    with pytest.raises(ScenarioError) as e:
        queue_runs(examples[example], ["cpu-1core"], [make_scenario(scenario)], db=sqlite_url)
    assert needle in str(e.value) and str(examples[example]) in str(e.value)
    with session_scope(sqlite_url) as s:
        runs = s.query(Run).all()
        assert [(r.status, r.scenario) for r in runs] == [(RunStatus.FAILED, scenario)]
        assert needle in runs[0].error
