"""Chat fine-tuning (SFT) of a pretrained model on a task: `sft(run, options)`, one function read top to bottom.

The base gets the chat tokens where it lacks them, and the loss counts answer tokens only; a task with pretraining
text mixes it in at the recipe's share, so the model keeps its language. The validation split chooses best.pt (the
task's pass rate, or the answer loss where no program checks a reply); the report measures the test split three
times alike (tinylm.posttrain.task.measure): the base asked in plain text, the start, and best.pt. With LoRA only
adapters train (and the new chat tokens' rows), at the recipe's LoRA rate; OUT/adapters.pt keeps best.pt's. For a
task whose pairs DPO samples on-policy, --data names such a DPO run: SFT then trains its start on the passing chosen
replies alone (rejection-sampling fine-tuning), DPO's control with the same replies and no rejected ones.
"""

from __future__ import annotations

import time
from typing import Callable

from ...data.conversations import ConversationLoader, MixtureLoader
from ...data.instruct import InstructDataError, build_examples
from ...data.tokens import RandomWindowSampler
from ...distributed import World
from ...model.lora import ADAPTERS_FILE
from ...paths import shown
from ...tokenizers.chat_template import ChatTemplate, RenderedChat, chat_token_ids
from ...train import run as steps
from ...train.options import RunOptions
from .. import job
from ..chat_task import ChatTask
from ..job import Method, PostTrainingOptions
from ..on_policy import passing_chosen
from ..recipes import SFTRecipe
from ..task import TaskError
from ..vocab import add_chat_tokens
from .trainer import SFTTrainer

SFT = Method("sft", SFTRecipe, loss_name="answer loss", task_type=ChatTask, extra_files=(ADAPTERS_FILE,),
             data_names_a_run=True)
SPLITS = {"train": "train", "validation": "validation (chooses best.pt)", "test": "test (reported)"}


def sft(run: RunOptions = RunOptions(), options: PostTrainingOptions = PostTrainingOptions(), *,
        world: World | None = None, say: Callable[[str], None] = print,
        on_record: Callable[[dict], None] | None = None) -> dict:
    """Fine-tune `options.base` on `options.task` (default: stories) into `run.out` (default
    runs/sft-<task>-<profile>), and return the report OUT/sft_eval.json keeps: the test split measured on the base
    in plain text ("baseline"), before and after ("after": best.pt), steps and seconds. Only rank 0 speaks and
    writes; `on_record` gets every trainer record (default: printed)."""
    started = time.perf_counter()
    settled = job.settle(SFT, run, options, world=world, say=say)
    run, task, recipe, world, say = settled.run, settled.task, settled.recipe, settled.world, settled.say
    on_record = on_record or (lambda record: print(job.record_line(settled, record), flush=True))
    source = task.source() + ("" if settled.data_run is None else
                              f", training on the passing chosen replies of {shown(settled.data_run)}")
    base, start_model, start_tokenizer = job.start_from(settled)
    with steps.claimed(run, SFT.files, world, say) as start:
        held = task.held_out(recipe.held_out, recipe.held_out)
        train = (task.train_records() if settled.data_run is None
                 else passing_chosen(settled.data_run, base.recorded.get("path")))
        records = {"train": train, "validation": [p.record() for p in held.validation],
                   "test": [p.record() for p in held.test]}
        if run.max_seconds is not None:
            say(f"plan: --max-seconds {run.max_seconds:g} bounds the fine-tuning steps only; on top of them come the "
                f"measurements before and after (greedy replies of up to {task.reply_tokens} tokens to "
                f"{len(held.test)} test problems, from the base and from best.pt) and each evaluation's")

        from_base = False  # a base, not a chat model: SFT's baseline asks it in plain text
        if start.saved is not None:
            description = f"resumed from {shown(run.out / 'last.pt')}"
            model, tokenizer, cfg = job.resumed(settled, start)
        else:
            description = base.description
            model, tokenizer = add_chat_tokens(start_model, start_tokenizer)
            from_base = tokenizer is not start_tokenizer
            if from_base:
                say(f"added <|im_start|>, <|im_end|>, <|pad|>: vocabulary {start_tokenizer.vocab_size:,} -> "
                    f"{tokenizer.vocab_size:,} tokens, embedding {start_model.config.vocab_size:,} -> "
                    f"{model.config.vocab_size:,} rows (new rows: the mean token row)")
            # under LoRA the chat tokens' rows train too when they were just added (they start equal: tinylm.model.lora)
            new_rows = chat_token_ids(tokenizer).values() if from_base else []
            cfg = job.with_lora(settled, model, recipe.train, token_ids=new_rows)

        template = ChatTemplate(tokenizer)
        examples = {part: build_examples(split, template, model.config.block_size, task.system_prompt)
                    for part, split in records.items()}
        if (tool := task.generation(tokenizer).get("tool")) is not None:  # a tool's tokens are read, never trained
            for split in examples.values():
                split.rendered = [RenderedChat(r.ids, tool.loss_mask(r.ids, r.is_answer)) for r in split.rendered]
        if empty := [part for part, split in examples.items() if not len(split)]:
            raise InstructDataError(f"{source} leaves no usable conversation for {empty[0]} ("
                                    + "; ".join(f"{SPLITS[p]}: {e.describe()}" for p, e in examples.items()) + ")")
        say(f"data: {source}" + "".join(f"\n  {SPLITS[part]}: {split.describe()}" for part, split in examples.items()))
        if start.saved is None and recipe.epochs and run.max_steps is None:
            per_step = cfg.batch_size * cfg.accumulation_steps(model.config.block_size, world.size) * world.size
            cfg = cfg.override(max_steps=max(cfg.warmup_steps + 1,
                                             round(recipe.epochs * len(examples["train"]) / per_step)))
        chat = loader = ConversationLoader(examples["train"].rendered, cfg.batch_size, template.pad, seed=cfg.seed,
                                           world=world)
        share = recipe.pretraining_share
        if share > 0:  # pretraining text mixed in, so that the model keeps its language
            if (text := task.pretraining_text(tokenizer)) is None:
                raise TaskError(f"--set pretraining_share={share:g}: the {task.name} task has no pretraining "
                                "text to mix in; leave it at 0")
            windows = RandomWindowSampler(text, model.config.block_size, cfg.batch_size, cfg.seed, world)
            loader = MixtureLoader({"chat": chat, "pretraining": windows}, {"chat": 1 - share, "pretraining": share},
                                   seed=cfg.seed)
        trainer = SFTTrainer(model, cfg, loader, out_dir=start.out, tokenizer=tokenizer, device=start.device,
                             callbacks=[on_record], world=world, template=template,
                             val_conversations=examples["validation"].rendered,
                             chooser=job.chooser(settled, tokenizer, held.validation, cfg.eval_batch_size))
        # each evaluation also scores as many training answers as there are validation conversations (memorisation)
        # and counts the passes over the chat data
        train_sample = examples["train"].rendered[: len(examples["validation"])]
        trainer.evaluators.update(train=lambda _: {"answer_loss": trainer.answer_loss(train_sample)},
                                  chat=lambda _: {"epochs": chat.epoch + chat.cursor / len(chat.order)})
        steps.continue_saved(trainer, start, run.out)

        cfg = trainer.cfg
        data = f"{100 * (1 - share):.0f}% chat, {100 * share:.0f}% pretraining text" if share else "chat only"
        header = (f"fine-tuning {description} on {task.name} | {trainer.model.num_parameters():,} parameters | "
                  f"profile {run.profile} | {cfg.max_steps} steps of {cfg.batch_size} x {world.size} | {data} | "
                  f"{100 * chat.padding_fraction():.1f}% padding | device {trainer.device} | run folder "
                  f"{shown(run.out)}")
        with job.trained(settled, trainer, base, start, header) as report:
            if "before" not in report:
                # the test split measured on the base asked in plain text (a new run from a base) and on the start;
                # the validation and training answers' loss too, the first points of the curves evaluations draw
                report.update(profile=run.profile, task=task.name, base=description, data=source,
                              **{part: split.counts for part, split in examples.items()})
                if start_model is not None and from_base:
                    report["baseline"] = job.measure_on(trainer, task.plain(), held.test,
                                                        model=start_model.to(trainer.device), tokenizer=start_tokenizer)
                report["before"] = {**job.measure_on(trainer, task, held.test),
                                    "validation_answer_loss": trainer.answer_loss(examples["validation"].rendered),
                                    "train_answer_loss": trainer.answer_loss(train_sample)}
                steps.write_report(start.out / SFT.report_name, report, world)
            start_model = None  # measured: its memory goes before training
            steps.fit(trainer)
        # the adapters name the model they adapt, not a resumed run's last.pt
        job.measure_after(settled, trainer, base.description or description, held.test, report)
        report["wall_seconds"] = round(time.perf_counter() - started, 1)  # this call's, a base's training included
        steps.write_report(run.out / SFT.report_name, report, world)
        if world.is_main:
            out = shown(run.out)
            say("\n".join([*job.measured_lines(task, report), job.best_line(settled, trainer, held.validation),
                           job.time_line(settled, report), f"next: {task.example_command(out)}"
                           + (f"   or   python -m tinylm.dpo --task {task.name} --base {out}" if "dpo" in task.recipes
                              else f"   or   python -m tinylm.serve --ckpt {out} --port 8000")]))
    return report
