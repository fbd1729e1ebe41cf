"""Batches for training: the tf.data pipeline and its backend-neutral twin (a Keras PyDataset) agree."""

import numpy as np

from training import pipeline


def epochs_of_tf_data(dataset, count: int) -> list[list[np.ndarray]]:
    return [[np.asarray(batch[0]) for batch in dataset] for _ in range(count)]


def epochs_of_py_dataset(dataset, count: int) -> list[list[np.ndarray]]:
    epochs = []
    for _ in range(count):
        epochs.append([np.asarray(dataset[index][0]) for index in range(len(dataset))])
        dataset.on_epoch_end()
    return epochs


def test_both_feeds_give_the_same_batches_in_the_same_new_order_each_epoch():
    rows = np.arange(10, dtype=np.float32)[:, None]
    labels = np.arange(10, dtype=np.int64)
    from_tf = epochs_of_tf_data(pipeline.tf_data_batches((rows, labels), 4, shuffle=True, seed=3), 2)
    from_keras = epochs_of_py_dataset(pipeline.py_dataset_batches((rows, labels), 4, shuffle=True, seed=3), 2)
    assert len(from_tf[0]) == len(from_keras[0]) == 3
    for tf_epoch, keras_epoch in zip(from_tf, from_keras):
        assert all(np.array_equal(a, b) for a, b in zip(tf_epoch, keras_epoch))
    assert not all(np.array_equal(a, b) for a, b in zip(*from_keras)), "a new order each epoch"
    assert sorted(np.concatenate(from_keras[0]).ravel()) == list(range(10))


def test_off_tensorflow_training_batches_are_augmented_and_clipped_and_keep_their_labels(monkeypatch):
    monkeypatch.setattr(pipeline, "on_tensorflow", lambda: False)
    rng = np.random.default_rng(0)
    images = rng.uniform(0.2, 0.8, (6, 32, 32, 1)).astype(np.float32)
    labels = np.arange(6, dtype=np.int64)
    data = pipeline.batches(images, labels, batch_size=6, training=True, seed=1)
    augmented, kept_labels = data[0]
    augmented = np.asarray(augmented)
    assert augmented.shape == images.shape and 0.0 <= augmented.min() and augmented.max() <= 1.0
    assert not np.allclose(augmented, images[np.asarray(kept_labels)]), "the batch was augmented"
    plain, plain_labels = pipeline.batches(images, labels, batch_size=6, training=False)[0]
    assert np.array_equal(plain, images) and np.array_equal(plain_labels, labels)
