"""`python -m tinylm.prepare` needs a package of this name; the command line is tinylm/cli/prepare.py."""
