"""`python -m tinylm <command> ...`: the same command lines as `python -m tinylm.<command>`."""

if __name__ == "__main__":  # a worker that multiprocessing spawns imports this module again, as __mp_main__
    from tinylm.cli import main

    main()
