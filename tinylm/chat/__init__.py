"""`python -m tinylm.chat`: a terminal chat with a fine-tuned model.

This package is only the command's name: its command line is tinylm/cli/chat.py, and the work is the library's.
"""
