"""The command lines, one module per command: argument parsing, progress and messages around the library.

`python -m tinylm.<command>` runs `tinylm/cli/<command>.py` for train, prepare, sample, eval, bench, interop,
finetune, chat and serve: the file tinylm/<command>.py is only the name `python -m` needs (for eval, bench,
interop and chat it is also the library the command uses). Every command ends through `tinylm.errors.run_cli`,
so an error it anticipates is one line and an exit status, never a traceback.
"""
