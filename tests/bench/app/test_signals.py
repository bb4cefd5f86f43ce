"""SIGINT/SIGTERM become Interrupted in the main thread; inside deferred() they wait for the block."""

import os
import signal

import pytest

from heptathlon.bench.app.signals import deferred, interruptible, last_interrupt
from heptathlon.bench.errors import Interrupted


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_raises_interrupted_with_its_exit_code(sig, code):
    before = signal.getsignal(sig)
    with pytest.raises(Interrupted) as e, interruptible():
        os.kill(os.getpid(), sig)
        signal.pause()  # the handler raises here at the latest
    assert (e.value.signame, e.value.exit_code, str(e.value)) == (signal.Signals(sig).name, code,
                                                                 f"interrupted by {signal.Signals(sig).name}")
    assert isinstance(e.value, KeyboardInterrupt) and last_interrupt() is e.value
    assert signal.getsignal(sig) is before  # restored


def test_a_signal_inside_deferred_waits_until_the_block_ends():
    steps = []
    with pytest.raises(Interrupted) as e, interruptible():
        with deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # bytecodes run: a pending Python handler would have fired by now
                steps.append(1)
            steps.append("committed")
        steps.append("never")
    assert steps[-1] == "committed" and e.value.signame == "SIGTERM"
