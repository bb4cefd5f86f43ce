"""The fleet's transport: a Celery app per broker URL, one queue per hardware profile, the task message.

How the fleet fits the executor seam (argued in docs/fleet.md): the submitter does not wait on
a remote :class:`~heptathlon.runners.executors.base.Executor`. It enqueues a small
:class:`FleetMessage` (the run id, the artifact's sha256 and store URL, the profile and the
scenario) on the profile's queue ``hw.<profile>`` and may exit. A worker on a measuring machine
takes the message, claims the run in the shared database, fetches and verifies the artifact,
and executes the typed :class:`~heptathlon.bench.types.WorkerJob` with :class:`CeleryExecutor`:
the local executor's fresh sandboxed worker process, so the same sandbox and the same meters,
on the worker's own machine (its fingerprint, software versions and raw npz samples are the
ones the result carries). The worker writes the results itself, in the same one transaction
as a local ``execute``.

Settings that make delivery at-least-once and execution exactly-once (the claim does the rest):
``task_acks_late`` (a message is acknowledged only after its run is stored),
``task_reject_on_worker_lost``, ``worker_prefetch_multiplier=1`` with concurrency 1 on the solo
pool (a worker holds one message, in one process that idles between tasks), JSON only (a
message never carries pickled objects), and a Redis visibility timeout longer than the longest
run ($HEPTATHLON_VISIBILITY_TIMEOUT_S, default 6 h).
"""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from heptathlon.runners.executors.local import LocalExecutor

TASK_RUN = "heptathlon.run"
TASK_NIGHTLY = "heptathlon.nightly"
CONTROL_QUEUE = "heptathlon.control"  # nightlies started by Celery beat, for `heptathlon worker --control`
QUEUE_PREFIX = "hw."
BROKER_ENV = "HEPTATHLON_BROKER"
VISIBILITY_ENV = "HEPTATHLON_VISIBILITY_TIMEOUT_S"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
DEFAULT_VISIBILITY_S = 6 * 3600.0
_SHA = re.compile(r"^[0-9a-f]{64}$")
_PROFILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class FleetError(ValueError):
    """A broker URL or message that cannot be used; one line."""


def queue_for(profile: str) -> str:
    """The queue a profile's runs go to: ``hw.<profile>``."""
    if not _PROFILE.match(profile):
        raise FleetError(f"profile {profile!r}: not a valid profile name for a queue")
    return QUEUE_PREFIX + profile


def profile_of_queue(queue: str) -> str | None:
    return queue[len(QUEUE_PREFIX):] if queue.startswith(QUEUE_PREFIX) else None


def broker_url(url: str | None = None) -> str:
    """``url``, else $HEPTATHLON_BROKER, else the local Redis."""
    url = url or os.environ.get(BROKER_ENV) or DEFAULT_BROKER
    if not re.match(r"^(redis|rediss|amqp|amqps|pyamqp)://", url):
        raise FleetError(f"broker {url!r}: expected a redis://, rediss://, amqp:// or amqps:// URL "
                         f"(--broker or ${BROKER_ENV})")
    return url


def visibility_timeout_s() -> float:
    raw = os.environ.get(VISIBILITY_ENV)
    try:
        value = float(raw) if raw else DEFAULT_VISIBILITY_S
    except ValueError:
        raise FleetError(f"${VISIBILITY_ENV}={raw!r}: expected a number of seconds") from None
    if not value > 0:
        raise FleetError(f"${VISIBILITY_ENV}={raw!r}: expected a positive number of seconds")
    return value


class FleetMessage(BaseModel):
    """What a task message carries: pointers, never code or results. Validated on arrival."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(pattern=r"^[0-9a-f-]{36}$")
    sha256: str
    artifacts: str = Field(min_length=1, max_length=4096)  # the store URL the submitter wrote to
    profile: str
    scenario: str = Field(min_length=1, max_length=64)

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str) -> str:
        if not _SHA.match(v):
            raise ValueError("expected 64 lowercase hex digits")
        return v

    @field_validator("profile")
    @classmethod
    def _profile(cls, v: str) -> str:
        queue_for(v)
        return v


def celery_settings(broker: str) -> dict[str, Any]:
    vt = visibility_timeout_s()
    return dict(
        broker_url=broker,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        task_serializer="json", result_serializer="json", accept_content=["json"],
        task_ignore_result=True, result_backend=None,
        task_default_queue="heptathlon.default",
        task_create_missing_queues=True,
        task_default_delivery_mode="persistent",  # RabbitMQ: persistent messages in durable queues
        # Redis: a message a dead worker held comes back after the visibility timeout; each worker
        # sweeps for such messages every few seconds (one ZRANGE, under a mutex).
        broker_transport_options={"visibility_timeout": vt, "unacked_restore_interval": min(10.0, max(1.0, vt / 4)),
                                  "unacked_restore_throttle": 1},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a broker restart: reconnect, however long it takes
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_enable_remote_control=True,  # `heptathlon status` asks the workers (inspect)
    )


def make_app(broker: str | None = None):
    """A Celery app for the broker (no tasks registered: the worker registers its own)."""
    from celery import Celery

    url = broker_url(broker)
    app = Celery("heptathlon", set_as_current=False)
    app.conf.update(celery_settings(url))
    return app


def enqueue(app, message: FleetMessage) -> str:
    """Publish one run's message on its profile's queue; returns the task id."""
    res = app.send_task(TASK_RUN, kwargs=message.model_dump(), queue=queue_for(message.profile),
                        routing_key=queue_for(message.profile))
    return res.id


def queue_depths(app, queues: list[str]) -> dict[str, int | None]:
    """Messages waiting in each queue (None: the queue does not exist yet)."""
    out: dict[str, int | None] = {}
    with app.connection_for_write() as conn:
        for q in queues:
            ch = conn.channel()
            try:
                if conn.transport.driver_type == "redis":  # a queue is a list; an empty one has no key
                    out[q] = int(ch.client.llen(q))
                else:
                    out[q] = ch.queue_declare(queue=q, passive=True).message_count
            except Exception:  # noqa: BLE001  amqp: a missing queue closes the channel with 404
                out[q] = None
            finally:
                try:
                    ch.close()
                except Exception:  # noqa: BLE001
                    pass
    return out


class CeleryExecutor(LocalExecutor):
    """What a fleet worker executes a claimed run's job with: the local executor's fresh,
    sandboxed worker process on the worker's machine (same sandbox, same meters). Its name
    marks the stored run as executed by the fleet."""

    name = "celery"
