"""Data: text from the web (or the offline mirror) in, token files and batches of windows out.

Pretraining text becomes uint16 token files (FineWeb-Edu's in shards) that training samples as windows. Chat
fine-tuning's instructions, DPO's preference pairs and the story task's instructions become records with a held-out
split that does not depend on the file's order, and conversations become padded batches with the loss on answers.
"""
