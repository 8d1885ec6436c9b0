"""Data: text from the web (or the offline mirror) in, token files and batches of windows out.

Files come through `tinylm.download` (by canonical URL with a sha256 check, or from the offline mirror).
`tokens` writes and reads uint16 token files and samples random windows from them. `corpora` prepares
Shakespeare and TinyStories as such files, `fineweb` FineWeb-Edu as shards with a resumable, DDP-aware loader,
`instruct` the instruction records of chat fine-tuning with their fixed split, `preference` the preference pairs of
DPO, split as SFT split them, and `conversations` batches of conversations (the loss on answers) and mixtures of
sources.
"""
