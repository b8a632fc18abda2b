"""The contributor actor: a consortium member, and nothing else.

Its machine-learning half has no chain, store or broker in it:

- ``node.models``     the registry of models by name and the genesis state_dict
- ``node.data``       scikit-learn's digits, the fixed train/test split and non-IID Dirichlet shards
- ``node.training``   one local round (base state -> local state, delta, loss) and evaluation
- ``node.privacy``    update-level differential privacy (clip + Gaussian noise) and its (ε, δ) accounting
- ``node.behaviours`` honest and Byzantine behaviours applied to a delta, for experiments
- ``node.recipe``     recipes (the task's code, installed by the member, checked by hash); builtins in
                      ``node.recipes``; ``node.statedict`` torch <-> numpy states of every dtype
- ``node.provenance`` the member's dataset manifest and commitment, the framework versions
- ``node.task_bounds`` the loss gate and ``max_scale_ratio`` a task anchors for its recipe, measured from it

Beside them, the member's round loop (runner.py) with its pluggable training step (trainer.py: a recipe, or the
member SDK's own loop, sdk.py), packaging and submission (packaging.py, relay.py), the base model (basemodel.py),
its journal and status, and the `meshprov node` commands (cli.py).

Imports: `node` imports only `ledger` (never `worker`); only `lab` imports `node` (tests/test_layout.py).

Weights cross every boundary as ``dict[str, numpy.ndarray]`` (any dtype, bfloat16 as uint16 bits; keys exactly
the model's state_dict keys),
so the update-file writer in ``ledger`` and the auditors never need torch. Importing ``node`` itself is cheap:
torch is imported by the submodules that need it.
"""
