"""The ``uir`` commands, one module per family; :mod:`uir.cli` parses the arguments and runs
them inside the error boundary (:mod:`uir.boundary`).

* :mod:`.common`: loading, device and output checks, messages, ``accelerate launch`` sharing;
* :mod:`.restore`: ``uir restore``;
* :mod:`.degrade`: ``uir degrade`` and ``uir degradations``;
* :mod:`.evaluate`: ``uir eval``, ``eval-router``, ``bench`` and ``demo``.

Each module imports torch only inside its commands, so ``uir --help`` stays torch-free.
"""
