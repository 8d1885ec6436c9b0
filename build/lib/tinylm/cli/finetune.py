"""Command line: chat fine-tuning (SFT) of a pretrained model, through the same Trainer as pretraining.

    python -m tinylm.finetune [--base pretrain|gpt2|RUN_DIR|CHECKPOINT|HF_FOLDER] [--data instruct|FILE]
        [--profile smoke|cpu|gpu] [--out DIR] [--resume] [--overwrite] [--max-steps N] [--max-seconds S]
        [--pretraining-share F] [--system-prompt TEXT] [--batch-size N] [--seed N] [--device ...] [--dtype ...]

--base: `gpt2` is OpenAI's GPT-2 124M from Hugging Face (online; offline, a folder saved by transformers or a
tinylm checkpoint made from one with `python -m tinylm.interop import`); a run folder or checkpoint (e.g. the
course's runs/gpt2-124m-gpu); `pretrain` pretrains the profile's small base first, in OUT/base (see
tinylm.chat.base for why). Default: gpt2 for the gpu profile, pretrain for cpu and smoke.
--data: `instruct` (tinylm.data.instruct: Alpaca-cleaned online, the 1,100-record set offline) or a JSON/JSONL file.

The base gets the chat tokens (tinylm.chat.vocab.add_chat_tokens) when it lacks them; every record becomes a
ChatML conversation with the loss on its answer only; a share of the batches (--pretraining-share) is
pretraining text, so the model keeps its language. Validation is the loss on the held-out conversations'
answer tokens. Before training and after it (with best.pt), the run measures that loss and the share of
held-out prompts whose greedy reply ends with <|im_end|> within 200 tokens; OUT/chat_eval.json keeps both,
with a few replies, and the wall time. OUT also gets metrics.jsonl, best.pt and last.pt, as `train` writes them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path

import torch

from ..chat.base import BASE_RECIPES, BaseModelUnavailable, pretrain_base, pretraining_tokens
from ..chat.sft import SFT_RECIPES, ChatTrainer, ConversationLoader, MixtureLoader, stop_rate
from ..chat.template import DEFAULT_SYSTEM_PROMPT, ROLES, ChatTemplate
from ..chat.vocab import add_chat_tokens
from ..config import DTYPES, GPTConfig, TrainConfig
from ..data.instruct import InstructDataError, build_examples, load_records, split_records, to_messages
from ..data.tokens import RandomWindowSampler
from ..model.gpt import GPT
from ..paths import atomic_write, runs_dir, shown
from ..runtime import resolve_device, resolve_profile
from ..tokenizers.gpt2 import BPETokenizer
from ..tokenizers.saved import tokenizer_from_dict
from ..train.checkpoint import CheckpointError, load_checkpoint, load_model, load_training_checkpoint
from ..train.distributed import World, device_for, run_in_world
from ..train.progress import print_record
from ..train.runlock import claim_run_folder, clear_old_run
from ..train.trainer import RUN_FILES
from .console import HelpFormatter, examples
from .errors import run_cli

REPLY_TOKENS = 200  # a held-out reply "stops" when <|im_end|> comes within this many tokens
SHOWN_REPLIES = 3  # held-out prompts whose replies before and after SFT go into chat_eval.json


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tinylm.finetune", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.finetune --profile cpu",
                        "python -m tinylm.finetune --base gpt2 --data instruct --profile gpu --out runs/chat-gpt2",
                        "python -m tinylm.finetune --profile cpu --resume"))
    parser.add_argument("--base", help="pretrain, gpt2, a run folder, a checkpoint or a transformers GPT-2 folder "
                        "(default: gpt2 for the gpu profile, pretrain for cpu and smoke)")
    parser.add_argument("--data", default="instruct", help="instruct, or a JSON/JSONL file of instruction/input/output "
                        "or messages records")
    parser.add_argument("--profile", choices=sorted(SFT_RECIPES),
                        help="default: $TINYLM_PROFILE, else gpu with CUDA, else cpu")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/chat-<profile>)")
    fresh_or_not = parser.add_mutually_exclusive_group()  # both would delete the run's history, then resume it
    fresh_or_not.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    fresh_or_not.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (default: the profile's)")
    parser.add_argument("--max-seconds", type=float, help="budget of training time for fine-tuning "
                        "(default: none, the profile's steps)")
    parser.add_argument("--pretraining-share", type=float, help="share of batches of pretraining text, "
                        "0 to 1 (default: the profile's)")
    parser.add_argument("--system-prompt", default=DEFAULT_SYSTEM_PROMPT, help="system prompt of every conversation")
    parser.add_argument("--batch-size", type=int, help="conversations per micro-batch on each process "
                        "(default: the profile's)")
    parser.add_argument("--seed", type=int, help="initial weights, batches and dropout (default: the profile's)")
    parser.add_argument("--device", help="e.g. cpu, cuda, mps (default: the best available)")
    parser.add_argument("--dtype", choices=DTYPES,
                        help="autocast dtype (default: by hardware)")
    args = parser.parse_args(argv)
    if args.pretraining_share is not None and not 0 <= args.pretraining_share < 1:
        parser.error("--pretraining-share must be at least 0 and below 1 (the rest of the batches are chat)")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    return run_in_world(lambda world, held: _finetune(args, world, held))  # held: the run folder's lock


def load_base(base: str, profile: str, out: Path, instruction_texts: list[str], device, world: World):
    """(model, tokenizer, description) of --base."""
    if base == "pretrain":
        if profile not in BASE_RECIPES:
            raise ValueError(f"--base pretrain trains the small base of the cpu and smoke profiles; the {profile} "
                             "profile starts from --base gpt2, a run folder or a checkpoint")
        checkpoint = pretrain_base(profile, out / "base", instruction_texts, device, world)
        model, tokenizer, _ = load_model(checkpoint)
        return model, tokenizer, f"small base pretrained in {shown(checkpoint.parent)}"
    if base == "gpt2" or (Path(base) / "config.json").is_file():
        from ..interop.hf_gpt2 import from_hf_gpt2

        how = ("Offline, point --base at a local copy: a folder saved by transformers (GPT2LMHeadModel."
               "save_pretrained: config.json and model.safetensors), or a tinylm checkpoint made from one with "
               "python -m tinylm.interop import --hf FOLDER --out gpt2.pt.")
        if base == "gpt2" and os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
            raise BaseModelUnavailable(f"--base gpt2 downloads OpenAI's GPT-2 124M from Hugging Face, but "
                                       f"HF_HUB_OFFLINE is set. {how}")
        try:
            return from_hf_gpt2(base), BPETokenizer("gpt2"), f"GPT-2 through transformers ({base})"
        except OSError as error:
            raise BaseModelUnavailable(f"could not load GPT-2 from {base!r}: it needs the network. {how}") from error
    model, tokenizer, _ = load_model(base)
    if tokenizer is None:
        raise CheckpointError(f"{base} carries no tokenizer; chat fine-tuning needs GPT-2's BPE tokenizer")
    return model, tokenizer, str(base)


def _chat_texts(records: list, system_prompt: str, source: str) -> list[str]:
    """Every text the template will encode for these records: what a trimmed base vocabulary must cover.
    An error, before any base is loaded or trained, when no record can become a conversation."""
    texts = [system_prompt, "\n", *(f"{role}\n" for role in ROLES)]
    usable = 0
    for record in records:
        try:
            texts += [message["content"] for message in to_messages(record, system_prompt)]
            usable += 1
        except ValueError:  # a record the rules skip adds nothing
            continue
    if not usable:
        raise InstructDataError(f"{source} leaves no usable conversation for training: every record is malformed "
                                "or has an empty answer (records need instruction and output, or messages)")
    return texts


def _measure(trainer: ChatTrainer, prompts: list[list[dict]], world: World) -> dict:
    """Answer-token loss on the held-out conversations and the stop rate of greedy replies to held-out prompts."""
    measured = {"answer_loss": trainer.evaluate()}  # every rank: the validation sums are reduced across ranks
    if world.is_main:
        started = time.perf_counter()
        rate, replies = stop_rate(trainer.model, trainer.template, prompts, REPLY_TOKENS)
        measured.update(stop_rate=rate, prompts=len(prompts), seconds=round(time.perf_counter() - started, 1),
                        replies=[{"prompt": p[-1]["content"], "reply": trainer.tokenizer.decode(r)}
                                 for p, r in zip(prompts[:SHOWN_REPLIES], replies)])
    return measured


def _write_report(out: Path, report: dict) -> None:
    with atomic_write(out / "chat_eval.json") as f:
        f.write(json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8"))


def _finetune(args: argparse.Namespace, world: World, held: contextlib.ExitStack) -> dict:
    started = time.perf_counter()
    say = print if world.is_main else (lambda *a, **k: None)
    profile = resolve_profile(args.profile)
    recipe = SFT_RECIPES[profile]
    out = args.out or runs_dir() / f"chat-{profile}"
    claim_run_folder(out, held, world.is_main, args.resume, args.overwrite, say)
    device = resolve_device(device_for(world, args.device))

    records, source = load_records(args.data)
    train_records, val_records = split_records(records)
    texts = _chat_texts(train_records, args.system_prompt, source)
    saved = load_training_checkpoint(out / "last.pt") if args.resume else None
    if saved is not None:
        model = GPT(GPTConfig.from_dict(saved["model_config"]))
        tokenizer, base_description = tokenizer_from_dict(saved["tokenizer"]), f"resumed from {shown(out / 'last.pt')}"
        cfg = TrainConfig.from_dict(saved["train_config"])
    else:
        base_model, base_tokenizer, base_description = load_base(
            args.base or recipe.base, profile, out, texts, device, world)
        model, tokenizer = add_chat_tokens(base_model, base_tokenizer)
        if tokenizer is not base_tokenizer:
            say(f"added <|im_start|>, <|im_end|>, <|pad|>: vocabulary {base_tokenizer.vocab_size:,} -> "
                f"{tokenizer.vocab_size:,} tokens, embedding {base_model.config.vocab_size:,} -> "
                f"{model.config.vocab_size:,} rows (new rows: the mean token row)")
        cfg = recipe.train
    template = ChatTemplate(tokenizer)
    block_size = model.config.block_size
    train_examples = build_examples(train_records, template, block_size, args.system_prompt)
    val_examples = build_examples(val_records, template, block_size, args.system_prompt)
    if not len(train_examples) or not len(val_examples):
        split = "training" if not len(train_examples) else "validation"
        raise InstructDataError(f"{source} leaves no usable conversation for {split} "
                                f"(train: {train_examples.describe()}; held out: {val_examples.describe()})")
    say(f"data: {source}\n  train: {train_examples.describe()}\n  held out: {val_examples.describe()}")

    overrides = {"max_steps": args.max_steps, "max_seconds": args.max_seconds, "batch_size": args.batch_size,
                 "seed": args.seed, "dtype": args.dtype}
    if not args.resume and recipe.epochs and args.max_steps is None:
        per_step = (args.batch_size or cfg.batch_size) * cfg.grad_accum_steps * world.size
        overrides["max_steps"] = max(cfg.warmup_steps + 1, round(recipe.epochs * len(train_examples) / per_step))
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    share = recipe.pretraining_share if args.pretraining_share is None else args.pretraining_share
    loader = chat_loader = ConversationLoader(train_examples.rendered, cfg.batch_size, template.pad, seed=cfg.seed,
                                              rank=world.rank, world_size=world.size)
    if share > 0:
        text, _ = pretraining_tokens(tokenizer)
        windows = RandomWindowSampler(text, block_size, cfg.batch_size, cfg.seed, world.rank, world.size)
        loader = MixtureLoader({"chat": loader, "pretraining": windows}, {"chat": 1 - share, "pretraining": share},
                               seed=cfg.seed)
    trainer = ChatTrainer(model, cfg, loader, None, out_dir=out, tokenizer=tokenizer, device=device,
                          callbacks=[print_record], world=world, val_conversations=val_examples.rendered,
                          template=template)
    if saved is not None:
        trainer.load_state_dict(saved)
    say(f"fine-tuning {base_description} | {model.num_parameters():,} parameters | profile {profile} | "
        f"{cfg.max_steps} steps of {cfg.batch_size} x {world.size} | {100 * (1 - share):.0f}% chat, "
        f"{100 * share:.0f}% pretraining text | {100 * chat_loader.padding_fraction():.1f}% padding | "
        f"device {trainer.device} | run folder {shown(out)}")

    if args.overwrite and world.is_main:  # late, so a failed start keeps the old run
        clear_old_run(out, (*RUN_FILES, "chat_eval.json"))
    prompts = val_examples.prompts()[: recipe.eval_prompts]
    saved_report = out / "chat_eval.json"
    report = json.loads(saved_report.read_text()) if args.resume and saved_report.is_file() else {}
    if "before" not in report:
        report.update(profile=profile, base=base_description, data=source, train=train_examples.counts,
                      held_out=val_examples.counts, before=_measure(trainer, prompts, world))
        if world.is_main:
            _write_report(out, report)
    trainer.fit()
    best = load_checkpoint(out / "best.pt", map_location=trainer.device) if world.is_main else None
    if world.distributed:
        best_state = [best["model"] if best else None]
        torch.distributed.broadcast_object_list(best_state)
        trainer.model.load_state_dict(best_state[0])
    else:
        trainer.model.load_state_dict(best["model"])
    report.update(after=_measure(trainer, prompts, world), steps=trainer.step, sft_seconds=round(trainer.elapsed, 1),
                  wall_seconds=round(time.perf_counter() - started, 1))  # this invocation's, base pretraining included
    if world.is_main:
        _write_report(out, report)
        before, after = report["before"], report["after"]
        say(f"answer-token validation loss: {before['answer_loss']:.4f} before, "
            f"{after['answer_loss']:.4f} after (best.pt)\n"
            f"replies ending with <|im_end|> within {REPLY_TOKENS} tokens: {100 * before['stop_rate']:.1f}% before, "
            f"{100 * after['stop_rate']:.1f}% after ({after['prompts']} held-out prompts, greedy)\n"
            f"wall time {report['wall_seconds']:.0f} s; report in {shown(saved_report)}\n"
            f"next: python -m tinylm.chat --ckpt {shown(out)}   or   "
            f"python -m tinylm.serve --ckpt {shown(out)} --port 8000")
    return report


def cli(argv=None) -> None:
    """`python -m tinylm.finetune`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
