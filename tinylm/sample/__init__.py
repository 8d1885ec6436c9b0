"""`python -m tinylm.sample` needs a package of this name; the command line is tinylm/cli/sample.py."""
