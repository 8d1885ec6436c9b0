"""Chat: a pretrained model and instruction records in; a chat model, and conversations with it, out.

`template` renders messages as ChatML with the mask of answer tokens, `vocab` grows a model's vocabulary by the
chat tokens, `sft` batches conversations and trains on answers only, `base` pretrains the small base model of the
cpu and smoke profiles, `session` keeps a conversation within the context, `server` serves a web page (static/) where
visitors chat through sessions.

`python -m tinylm.chat` runs the terminal chat (tinylm/cli/chat.py); `python -m tinylm.finetune` and
`python -m tinylm.serve` are the fine-tuning and web commands.
"""
