"""Training batches: the video order of a stage is a permutation of the whole
split (as the release draws it), not a local shuffle of the shards' order;
the resident split draws the same batches in-graph."""
import numpy as np
import pytest
import tensorflow as tf

from dgam_tf.config import DataConfig
from dgam_tf.data import pipeline, records, resident, writer

NUM_VIDEOS, NUM_SHARDS, BATCH = 32, 4, 4


@pytest.fixture(scope="module")
def numbered_data(tmp_path_factory):
    """32 videos whose features hold their index; the writer deals them to 4
    shards in turn, so video i is record i // 4 of shard i % 4."""
    path = str(tmp_path_factory.mktemp("numbered") / "data")
    info = records.DatasetInfo(class_names=["a", "b"], streams=["rgb"], feature_dim=2)
    with writer.DatasetWriter(path, info, num_shards={"train": NUM_SHARDS}) as out:
        for i in range(NUM_VIDEOS):
            out.add("train", records.Video(
                video_id=f"v{i}", features={"rgb": np.full((6, 2), i, np.float32)},
                labels=[i % 2], duration=6 * 0.64))
    return path, records.load_info(path)


def video_order(data, epoch, shuffle_buffer):
    path, info = data
    config = DataConfig(streams=("rgb",), num_segments=3, batch_size=BATCH,
                        shuffle_buffer=shuffle_buffer)
    ds = pipeline.train_dataset(path, info, config, epoch, stage=2)   # no GAM: no noise
    return np.concatenate([b["rgb"].numpy()[:, 0, 0] for b in ds]).astype(int)


def test_every_stage_draws_a_permutation_of_the_whole_split(numbered_data):
    first_batches = []
    for epoch in range(10):
        order = video_order(numbered_data, epoch, shuffle_buffer=0)
        assert sorted(order) == list(range(NUM_VIDEOS))
        first_batches.extend(order[:BATCH])
    # Global: the first batch takes videos from anywhere in the shards (about
    # half of them from a shard's second half). A local shuffle of 2 videos
    # over the interleaved shards only reaches each shard's first records.
    late = np.sum(np.array(first_batches) // NUM_SHARDS >= NUM_VIDEOS // NUM_SHARDS // 2)
    assert late >= 10, first_batches
    local = np.concatenate([video_order(numbered_data, e, shuffle_buffer=2)[:BATCH]
                            for e in range(10)])
    assert np.all(local // NUM_SHARDS < 2), local


def test_orders_differ_across_epochs_and_repeat_for_the_same_epoch(numbered_data):
    a, b = video_order(numbered_data, 0, 0), video_order(numbered_data, 1, 0)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, video_order(numbered_data, 0, 0))


@pytest.mark.parametrize("epoch, stage, reuse", [(0, 1, 1), (3, 2, 1), (3, 2, 2)])
def test_resident_batches_are_the_streamed_batches_bit_for_bit(tiny_data_dir, tiny_info,
                                                               epoch, stage, reuse):
    """Two streams with CVAE noise; with --batch_reuse_epochs=2 the draw is
    shared by the chunk's stages and the batch order is the stage's."""
    config, latent_dim = DataConfig(num_segments=7, batch_size=3, batch_reuse_epochs=reuse), 2
    data = {k: tf.constant(v) for k, v in resident.load(tiny_data_dir, tiny_info,
                                                        config).items()}
    order, perm, draw_seed, noise_seed = pipeline.stage_order(8, config, epoch, stage)
    streamed = list(pipeline.train_dataset(tiny_data_dir, tiny_info, config, epoch, stage,
                                           latent_dim))
    assert len(streamed) == 2 and order.shape == [6]
    for i, batch in enumerate(streamed):
        drawn = resident.draw_batch(data, order[3 * i:3 * i + 3], perm, draw_seed,
                                    noise_seed, config, latent_dim)
        assert drawn.keys() == batch.keys() == {"rgb", "flow", "labels", "rgb_noise",
                                                "flow_noise"}
        for k in batch:
            np.testing.assert_array_equal(drawn[k].numpy(), batch[k].numpy(), err_msg=k)
    # The draw positions of a stage are 6 distinct videos of the 8.
    assert len(set(perm.numpy()[order.numpy()])) == 6
