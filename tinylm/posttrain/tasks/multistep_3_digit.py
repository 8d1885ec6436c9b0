"""The multistep task with 3-digit numbers: reinforcement learning's task in notebook 15.

A model fine-tuned on the 2-digit problems (`sft --task multistep`) passes fewer of these: it must carry longer numbers
into its calls and through its steps. That leaves GRPO room to gain, where on the 2-digit test the SFT model is already
near the top. It keeps multistep's recipes, so GRPO starts from runs/sft-multistep-<profile>."""

from __future__ import annotations

from .multistep import Multistep


class Multistep3Digit(Multistep):
    name = "multistep_3_digit"
    settings = {profile: {**values, "digits": 3} for profile, values in Multistep.settings.items()}


TASK = Multistep3Digit
