"""Direct preference optimisation (DPO): `objective` (the loss, pair log-probabilities, the preference summary),
`trainer` (`DPOTrainer`, `PairLoader`) and `run` (`dpo(run, options)`: what `python -m tinylm.dpo` runs), on any task
of tinylm.posttrain.tasks with a DPO recipe: fixed pairs, or pairs its check makes from the model's own replies."""
