"""What the notebooks use beside the model: the Colab badge and install cell, the runs one notebook borrows from
another (`notebooks`), self-checking exercises (`exercises`), the generation playground and attention viewer
(`playground`), loss plots (`plotting`), diagrams (`diagrams`), seeded ablation arms (`ablation`), the speedrun's
record table (`speedrun`) and the IsoFLOP sweep with its scaling-law fits (`scaling`). The only stage that imports
matplotlib and ipywidgets.
"""
