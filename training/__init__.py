"""The model factory: data discovery and splits, input pipeline, architectures, training, evaluation, export."""
