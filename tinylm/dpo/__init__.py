"""`python -m tinylm.dpo` needs a package of this name; the command line is tinylm/cli/dpo.py."""
