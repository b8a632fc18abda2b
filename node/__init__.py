"""The contributor actor: local training of a consortium member.

This package holds the machine-learning half of a node, with no chain, store or broker in it:

- ``node.models``     the registry of models by name and the genesis state_dict
- ``node.data``       scikit-learn's digits, the fixed train/test split and non-IID Dirichlet shards
- ``node.training``   one local round (base state -> local state, delta, loss) and evaluation
- ``node.privacy``    update-level differential privacy (clip + Gaussian noise) and its (ε, δ) accounting
- ``node.behaviours`` honest and Byzantine behaviours applied to a delta, for experiments

Weights cross every boundary as ``dict[str, numpy.ndarray]`` (float32, keys exactly the model's state_dict keys),
so the update-file writer in ``ledger`` and the auditors never need torch. Importing ``node`` itself is cheap:
torch is imported by the submodules that need it.
"""
