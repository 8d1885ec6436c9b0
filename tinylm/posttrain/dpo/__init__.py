"""Direct preference optimisation (DPO): `objective` (the loss, pair log-probabilities, the preference summary),
`on_policy` (pairs a verifier makes from the model's own replies, and its pass rate), `trainer` (`DPOTrainer`,
`VerifiedDPOTrainer`, `PairLoader`), `recipes` (each task's and profile's), `report` (the measurements and the
closing summary) and `run` (`DPOOptions`, `dpo(run, options)`: what `python -m tinylm.dpo` runs)."""
