"""Run a module as on a GPU machine that has Keras and JAX but no TensorFlow.

    KERAS_BACKEND=jax python tests/without_tensorflow.py training.train --task binary ...
"""

import importlib.abc
import runpy
import sys


class NoTensorFlow(importlib.abc.MetaPathFinder):
    """Any import of TensorFlow fails, as where it is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, NoTensorFlow())
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
