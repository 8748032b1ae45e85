"""The training steps as the runtime executes them: after Grappler's rewrites,
every read of a variable is ordered before or after each update of that
variable. An unordered read races with the update and may see either value,
so reruns of a --deterministic command would differ."""
import keras
import pytest
import tensorflow as tf
from tensorflow.python.grappler import tf_optimizer

from conftest import tiny_config
from dgam_tf.data import pipeline
from dgam_tf.training import trainer as trainer_lib

READ_OPS = {"ReadVariableOp"}
WRITE_OPS = {"AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp"}


def optimized_graph(concrete_fn):
    """The GraphDef that Grappler makes of a tf.function body (default options)."""
    graph = concrete_fn.graph
    meta = tf.compat.v1.train.export_meta_graph(graph_def=graph.as_graph_def(), graph=graph)
    fetches = meta.collection_def["train_op"].node_list.value
    fetches.extend(t.name for t in graph.outputs)
    fetches.extend(op.name for op in graph.control_outputs)
    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.min_graph_nodes = -1   # optimise small graphs too
    return tf_optimizer.OptimizeGraph(config, meta)


def unordered_accesses(graph_def):
    """(read, write) node pairs on one resource that no path of edges orders."""
    inputs = {n.name: [i.lstrip("^").split(":")[0] for i in n.input] for n in graph_def.node}
    ancestors = {}

    def ancestors_of(name):
        if name not in ancestors:
            seen, stack = set(), [name]
            while stack:
                for parent in inputs.get(stack.pop(), ()):
                    if parent not in seen:
                        seen.add(parent)
                        stack.append(parent)
            ancestors[name] = seen
        return ancestors[name]

    accesses = {}                                   # resource -> [(node, is_write)]
    for n in graph_def.node:
        if n.op in READ_OPS | WRITE_OPS:
            accesses.setdefault(inputs[n.name][0], []).append((n.name, n.op in WRITE_OPS))
    return [(read, write)
            for nodes in accesses.values()
            for write, is_write in nodes if is_write
            for read, is_read_write in nodes if not is_read_write
            if read not in ancestors_of(write) and write not in ancestors_of(read)]


def test_unordered_accesses_finds_a_race():
    """The check itself, on the pattern the guide loss had: a read of v whose
    value feeds only a stop-gradient target, with v updated by Keras Adam.
    Grappler drops the edge that ordered that read before the update."""
    v, u = tf.Variable(tf.ones([4, 4])), tf.Variable(tf.ones([3, 4]))
    x = tf.ones([3, 4])
    adam = keras.optimizers.Adam(0.1)
    adam.build([u, v])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            target = tf.stop_gradient(tf.nn.softmax(tf.matmul(x, v)))
            loss = (tf.reduce_sum(tf.abs(u - target)) +
                    tf.reduce_sum(tf.square(tf.matmul(2 * x, v))))
        adam.apply_gradients(zip(tape.gradient(loss, [u, v]), [u, v]))
        return loss

    assert unordered_accesses(optimized_graph(step.get_concrete_function()))


@pytest.mark.parametrize("stage", [trainer_lib.CVAE_STAGE, trainer_lib.MODEL_STAGE])
def test_training_steps_order_every_read_with_its_updates(tiny_data_dir, tiny_info, tmp_path,
                                                           stage):
    tr = trainer_lib.Trainer(tiny_config(tiny_data_dir, tmp_path / "m"), tiny_data_dir,
                             tiny_info)
    with pipeline.reading(tiny_data_dir, tiny_info, "train"):
        batch = next(iter(tr._dataset(1, [stage])))
    step = tr._steps[stage].get_concrete_function(batch, tf.constant(1.0))
    graph = optimized_graph(step)
    assert sum(n.op in WRITE_OPS for n in graph.node) > 0
    assert unordered_accesses(graph) == []
