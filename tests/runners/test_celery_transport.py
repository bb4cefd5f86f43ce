"""The fleet's transport settings and message validation (no broker needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from heptathlon.runners.executors.celery import (FleetError, FleetMessage, broker_url, celery_settings, make_app,
                                                 profile_of_queue, queue_for)

SHA = "ab" * 32
RID = "0f0e0d0c-0b0a-4908-8706-050403020100"


def test_one_queue_per_profile():
    assert queue_for("cpu-1core") == "hw.cpu-1core"
    assert profile_of_queue("hw.cuda-fp16") == "cuda-fp16" and profile_of_queue("celery") is None
    with pytest.raises(FleetError, match="not a valid profile name"):
        queue_for("a b")


def test_settings_make_delivery_at_least_once_and_one_at_a_time(monkeypatch):
    monkeypatch.setenv("HEPTATHLON_VISIBILITY_TIMEOUT_S", "7200")
    s = celery_settings("redis://127.0.0.1:6379/0")
    assert s["task_acks_late"] and s["task_reject_on_worker_lost"]
    assert s["worker_prefetch_multiplier"] == 1 and s["worker_concurrency"] == 1
    assert s["accept_content"] == ["json"] and s["task_serializer"] == "json"  # never pickle
    assert s["broker_transport_options"]["visibility_timeout"] == 7200
    app = make_app("redis://127.0.0.1:6379/3")
    assert app.conf.task_acks_late and app.conf.broker_url == "redis://127.0.0.1:6379/3"


def test_broker_url_defaults_and_errors(monkeypatch):
    monkeypatch.delenv("HEPTATHLON_BROKER", raising=False)
    assert broker_url().startswith("redis://127.0.0.1:6379")
    monkeypatch.setenv("HEPTATHLON_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
    assert broker_url().startswith("amqp://")
    with pytest.raises(FleetError, match=r"broker 'http://x': expected a redis://"):
        broker_url("http://x")
    monkeypatch.setenv("HEPTATHLON_VISIBILITY_TIMEOUT_S", "soon")
    with pytest.raises(FleetError, match="HEPTATHLON_VISIBILITY_TIMEOUT_S"):
        celery_settings("redis://x")


def test_message_is_validated_at_the_boundary():
    m = FleetMessage(run_id=RID, sha256=SHA, artifacts="/srv/store", profile="cpu-1core", scenario="single_stream")
    assert FleetMessage.model_validate(m.model_dump()) == m
    for bad in ({"sha256": "../x"}, {"profile": "../../etc"}, {"run_id": "x; drop table"}, {"extra": 1}):
        with pytest.raises(ValidationError):
            FleetMessage.model_validate({**m.model_dump(), **bad})
