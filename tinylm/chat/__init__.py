"""`python -m tinylm.chat` needs a package of this name; the command line is tinylm/cli/chat.py."""
