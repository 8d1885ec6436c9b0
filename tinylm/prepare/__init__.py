"""`python -m tinylm.prepare` needs a package of this name (the command line is tinylm/cli/prepare.py), and `mirror`
builds the offline data mirror: it takes in the canonical URLs and digests that the data, tokenizers and eval stages
pin, and gives out the folder those stages read with $TINYLM_DATA_MIRROR set (build_mirror).
"""
