"""What the notebooks use beside the model: the Colab badge and install cell, the runs one notebook borrows from
another and the published model (`notebooks`), the repository's address and the notebooks that follow each track
(`repository`, which a training command's closing lines read too), self-checking exercises (`exercises`), the
generation playground and attention viewer (`playground`), loss plots (`plotting`), diagrams (`diagrams`), seeded
ablation arms (`ablation`), the speedrun's record table (`speedrun`) and the IsoFLOP sweep with its scaling-law fits
(`scaling`). The only stage that imports matplotlib and ipywidgets.
"""
