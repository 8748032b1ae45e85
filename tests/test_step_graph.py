"""The training steps as the runtime executes them: after Grappler's rewrites,
every read of a variable is ordered before or after each update of that
variable. An unordered read races with the update and may see either value,
so reruns of a --deterministic command would differ.

(In TF 2.21 Grappler's dependency optimizer drops the control edge that auto
control deps put from a read to a later Keras-Adam update when the read's
value feeds nothing the update needs, e.g. a stop-gradient target: the
T-CAM read of the guide loss was such a read.)"""
import pytest
import tensorflow as tf
from tensorflow.python.grappler import tf_optimizer

from conftest import make_trainer, tiny_config
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


def test_unordered_accesses_on_a_hand_built_graph():
    """r1 feeds nothing the write needs (the guide loss's old T-CAM read);
    r2 feeds the write; r3 waits for it (a control edge)."""
    graph = tf.compat.v1.GraphDef()
    for name, op, inputs in [("v", "VarHandleOp", []), ("u", "VarHandleOp", []),
                             ("r1", "ReadVariableOp", ["v"]), ("r2", "ReadVariableOp", ["v"]),
                             ("g", "MatMul", ["r2:0", "r2:0"]),
                             ("w", "AssignSubVariableOp", ["v", "g"]),
                             ("r3", "ReadVariableOp", ["v", "^w"]),
                             ("ru", "ReadVariableOp", ["u"])]:
        graph.node.add(name=name, op=op, input=inputs)
    assert unordered_accesses(graph) == [("r1", "w")]


@pytest.mark.parametrize("stage", [trainer_lib.CVAE_STAGE, trainer_lib.MODEL_STAGE])
def test_training_steps_order_every_read_with_its_updates(tiny_data_dir, tiny_info, tmp_path,
                                                           stage):
    tr = make_trainer(tiny_config(tiny_data_dir, tmp_path / "m"), tiny_info)
    with pipeline.reading(tiny_data_dir, tiny_info, "train"):
        batch = next(iter(tr.inputs.dataset(1, [stage])))
    step = tr.step_fns[stage].get_concrete_function(batch, tf.constant(1.0))
    graph = optimized_graph(step)
    assert sum(n.op in WRITE_OPS for n in graph.node) > 0
    assert unordered_accesses(graph) == []
