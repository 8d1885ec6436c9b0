"""Chat: a pretrained model and instruction records in; a chat model, and conversations with it, out.

`template` renders messages as ChatML with the mask of answer tokens, `vocab` grows a model's vocabulary by the
chat tokens, `sft` batches conversations and trains on answers only, `base` pretrains the small base model of the
cpu and smoke profiles, `session` keeps a conversation within the context, `server` serves a web page (static/) where
visitors chat through sessions. After SFT: `lora` trains low-rank adapters instead of every weight, `dpo` is the
preference loss and its trainer, `preference` runs DPO on a chat model.

`python -m tinylm.chat` runs the terminal chat (tinylm/cli/chat.py); `python -m tinylm.finetune`, `python -m
tinylm.dpo` and `python -m tinylm.serve` are the fine-tuning, preference-tuning and web commands.
"""
