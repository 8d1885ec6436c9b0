"""`python -m tinylm.dpo`: the command line in tinylm/cli/post_training.py."""

if __name__ == "__main__":  # a worker that multiprocessing spawns imports this module again, as __mp_main__
    from tinylm.cli import run

    run("dpo")
