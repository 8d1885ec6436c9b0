"""`python -m tinylm.chat`: a terminal chat with a fine-tuned model.

This package is only the command's name. Its command line is tinylm/cli/chat.py; the work is
tinylm.serve.session.ChatSession's.
"""
