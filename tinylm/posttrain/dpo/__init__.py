"""Direct preference optimisation (DPO): `objective` (the loss, pair log-probabilities, the preference summary),
`trainer` (`DPOTrainer`, `PairLoader`), `recipes` (each profile's) and `run` (`DPOOptions`, `dpo(run, options)`: what
`python -m tinylm.dpo` runs)."""
