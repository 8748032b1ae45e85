"""tf.distribute strategies and device set-up for --strategy / --cpu_devices."""
import json
import os

import tensorflow as tf

from dgam_tf.errors import UserError


def split_cpu(num_devices):
    """Splits the CPU into `num_devices` logical devices (before TF starts)."""
    if num_devices <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)


def make_strategy(name):
    """default: one device; mirrored: every GPU, else every logical CPU;
    multi_worker: MultiWorkerMirroredStrategy configured by TF_CONFIG."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        try:
            cluster = json.loads(os.environ["TF_CONFIG"])
            cluster["cluster"]["worker"], cluster["task"]["index"]
        except KeyError:
            raise UserError("--strategy=multi_worker needs TF_CONFIG with "
                            "cluster.worker and task.index") from None
        except json.JSONDecodeError as e:
            raise UserError(f"TF_CONFIG is not valid JSON: {e}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UserError(f"unknown --strategy {name}")


def num_workers(strategy):
    """Machines taking part (each runs one input pipeline)."""
    try:
        devices = strategy.extended.worker_devices
    except RuntimeError:  # The default strategy: one device, one machine.
        return 1
    return strategy.num_replicas_in_sync // len(devices)


def is_chief_task():
    """False on a multi-worker task that is not the chief (TF_CONFIG's chief,
    else worker 0): the one that writes checkpoints, summaries and metrics,
    and locks the model dir."""
    try:
        task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task") or {}
    except (json.JSONDecodeError, AttributeError):
        return True     # make_strategy names the mistake
    return task.get("type") in ("chief", None) or (
        task.get("type") == "worker" and task.get("index") == 0)


def is_chief(strategy):
    """True on the worker that writes checkpoints, summaries and metrics
    (any task of a single-machine strategy)."""
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    return not multi_worker or is_chief_task()


def input_context(strategy):
    """This worker's tf.distribute.InputContext, as distribute_datasets_from_function
    makes it (input pipelines = workers, per-replica batch size)."""
    make = getattr(strategy.extended, "_make_input_context", None)
    if make is not None:     # multi_worker
        return make()
    return tf.distribute.InputContext(1, 0, strategy.num_replicas_in_sync)


def local_replica(strategy):
    """In replica context: this replica's index among its worker's replicas."""
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    return replica % (strategy.num_replicas_in_sync // num_workers(strategy))
