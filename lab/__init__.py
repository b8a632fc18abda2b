"""The lab: whatever runs a whole consortium on one machine, above the member and the workers.

- ``lab.consortium``        deploy a consortium and grant its roles through ``ledger.chain.deploy`` (demo,
                            benchmarks and tests all set up through it)
- ``lab.demo``              ``meshprov demo``: real processes from an empty directory to an audited model
- ``lab.experiment``        the Byzantine robustness experiment (the pure pipeline) and its sweeps
- ``lab.faults``            fault injection on real processes (``meshprov experiment faults``)
- ``lab.meshnet``           a consortium of real worker processes, with faults to inject (faults, benchmarks)
- ``lab.recipe_validator`` a validator's recipe hooks (held-out slice, loss gate, reference training), named by
                            the worker as a plug-in string (``worker`` may not import ``node``)
- ``lab.procs``             child processes: started in their own sessions, recorded, always stopped
- ``lab.central``           a centrally trained baseline; ``lab.simulate`` an in-memory FedAvg simulation

Imports: ``lab`` may import ``ledger``, ``node`` and ``worker``; none of them imports ``lab``. Nothing here
imports ``tests`` or ``benchmarks``.
"""
