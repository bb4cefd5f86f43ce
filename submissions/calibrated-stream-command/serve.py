"""The calibrated streaming model over the stdio protocol's streaming extension, with Heptathlon's helper.

Every request busy-waits ttft_ms, streams one token, then busy-waits itl_ms before each of the
other max_new_tokens - 1 tokens (EOS never comes, so ignore_eos changes nothing).
"""
import json
import time

from heptathlon.runners.stdio import serve_generate


def load():
    cost = json.load(open("cost.json"))
    return int(float(cost["ttft_ms"]) * 1e6), int(float(cost["itl_ms"]) * 1e6)


def spin(ns):
    pc = time.perf_counter_ns
    end = pc() + ns
    while pc() < end:
        pass


def generate(cost, prompt, *, max_new_tokens, ignore_eos):
    ttft_ns, itl_ns = cost
    spin(ttft_ns)
    yield "tok"
    for _ in range(max_new_tokens - 1):
        spin(itl_ns)
        yield " tok"


if __name__ == "__main__":
    serve_generate(generate, load)
