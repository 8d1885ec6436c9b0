"""A calculator the model calls in the middle of its own text, as GSM8K's worked solutions write it: once a reply
contains `<<48/2=`, the calculator writes `24>>` into the stream and sampling goes on after it, as GSM8K's authors
sampled with a calculator (Cobbe et al. 2021, https://arxiv.org/abs/2110.14168).

`decode(..., tool=Calculator(tokenizer))` forces the calculator's tokens in place of sampled ones, one per step, so
the key/value cache extends over them as over any token. The model never learns to write them: `written_by_tool`
finds them again in a finished sequence, and SFT and GRPO leave them out of the loss.

The expression is model output, so it is untrusted input: a parser written for it reads numbers, + - * / (and × ÷ −)
and parentheses, in exact fractions, with bounded length, nesting, digits and size. Anything else (a name, a power,
division by zero, a 10**100) makes the result `error`, never an exception or a long wait.
"""

from __future__ import annotations

import re
from fractions import Fraction

import torch

from ..errors import InputError

OPEN, EQUALS, CLOSE = "<<", "=", ">>"
ERROR = "error"  # what the calculator writes for an expression it refuses: <<2**99=error>>
MAX_LENGTH = 80  # characters in one expression
MAX_DEPTH = 8  # parentheses and signs nested
MAX_DIGITS = 12  # in one number
MAX_SIZE = Fraction(10**15)  # every value met, and every denominator, stays below this
WRITTEN = "-0123456789." + ERROR + CLOSE  # every character a result is written with
DECIMALS = 4  # a result that is no integer is written rounded to this many places, trailing zeros dropped

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|(.))")
_SYMBOLS = {"×": "*", "÷": "/", "−": "-"}


class CalculatorError(InputError):
    """An expression the calculator does not compute: malformed, unsupported, or too large."""


def _tokens(text: str) -> list[str]:
    if len(text) > MAX_LENGTH:
        raise CalculatorError(f"longer than {MAX_LENGTH} characters")
    found = []
    for number, symbol in _TOKEN.findall(text):
        if number:
            if len(number.replace(".", "")) > MAX_DIGITS:
                raise CalculatorError(f"a number of more than {MAX_DIGITS} digits")
            found.append(number)
        elif symbol.strip():
            symbol = _SYMBOLS.get(symbol, symbol)
            if symbol not in "+-*/()":
                raise CalculatorError(f"{symbol!r} is not a number, + - * / or a parenthesis")
            found.append(symbol)
    return found


def evaluate(text: str) -> Fraction:
    """The exact value of an arithmetic expression; CalculatorError for anything else."""
    tokens, position = _tokens(text), 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def checked(value: Fraction) -> Fraction:
        if abs(value) >= MAX_SIZE or value.denominator >= MAX_SIZE:
            raise CalculatorError("a value too large to compute")
        return value

    def sum_(depth: int) -> Fraction:  # term (+|- term)*
        value = product(depth)
        while peek() in ("+", "-"):
            value = checked(value + product(depth) if take() == "+" else value - product(depth))
        return value

    def product(depth: int) -> Fraction:  # factor (*|/ factor)*
        value = factor(depth)
        while peek() in ("*", "/"):
            if take() == "*":
                value = checked(value * factor(depth))
            else:
                divisor = factor(depth)
                if divisor == 0:
                    raise CalculatorError("division by zero")
                value = checked(value / divisor)
        return value

    def factor(depth: int) -> Fraction:  # a number, (sum), or a signed factor
        if depth > MAX_DEPTH:
            raise CalculatorError(f"nested more than {MAX_DEPTH} deep")
        token = take() if peek() is not None else None
        if token in ("-", "+"):
            value = factor(depth + 1)
            return -value if token == "-" else value
        if token == "(":
            value = sum_(depth + 1)
            if peek() != ")":
                raise CalculatorError("a parenthesis left open")
            take()
            return value
        if token is None or not token[0].isdigit() and token[0] != ".":
            raise CalculatorError("an operator without a number")
        return checked(Fraction(token))

    value = sum_(0)
    if peek() is not None:
        raise CalculatorError(f"unexpected {peek()!r}")
    return value


def format_number(value: Fraction) -> str:
    """An integer as itself; any other value rounded to DECIMALS places, trailing zeros dropped (1/4 -> 0.25)."""
    if value.denominator == 1:
        return str(value.numerator)
    whole, part = divmod(abs(round(value * 10**DECIMALS)), 10**DECIMALS)
    digits = f"{whole}.{part:0{DECIMALS}d}".rstrip("0").rstrip(".")
    return "-" + digits if value < 0 and digits != "0" else digits


def result_text(expression: str) -> str:
    """What the calculator writes after `<<expression=`: the value, or ERROR, then the closing `>>`."""
    try:
        return format_number(evaluate(expression)) + CLOSE
    except CalculatorError:
        return ERROR + CLOSE


def with_results(text: str) -> str:
    """`text` with every call's result as the calculator writes it (GSM8K's `<<5/2=2.50>>` -> `<<5/2=2.5>>`), so
    that training text shows what the model will read at sampling time."""
    return re.sub(rf"{OPEN}([^=<>]*){EQUALS}[^<>]*?{CLOSE}", lambda m: f"{OPEN}{m[1]}{EQUALS}{result_text(m[1])}",
                  text)


class Calculator:
    """The tool `decode` runs: given a tokenizer, it reads each row's tokens and says which it writes next."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        try:
            writes = tokenizer.decode(tokenizer.encode(WRITTEN)) == WRITTEN
        except (ValueError, KeyError):
            writes = False
        if not writes:
            raise CalculatorError(f"this tokenizer cannot write the calculator's results ({WRITTEN!r}): give the "
                                  "calculator to a model whose tokenizer writes digits, '.', '-' and letters")

    def calls(self, prompts: list[list[int]]) -> CalculatorCalls:
        """The state of one generation, the prompts read (one that ends in `<<expression=` is answered first)."""
        calls = CalculatorCalls(self, len(prompts))
        for row, prompt in enumerate(prompts):
            for token in prompt:
                calls.read(row, token)
        return calls

    def written_by_tool(self, ids: list[int]) -> list[bool]:
        """Which of a sequence's tokens the calculator would have written: the loss leaves these out."""
        calls = CalculatorCalls(self, 1)
        return [calls.read(0, token) for token in ids]

    def loss_mask(self, ids: list[int], trained: list[bool]) -> list[bool]:
        """`trained` (which tokens a loss counts) without the calculator's: the model reads them, never learns to
        write them."""
        return [kept and not tool for kept, tool in zip(trained, self.written_by_tool(ids))]


class CalculatorCalls:
    """Per row: the text of an open call (after `<<`, None where none is open) and the tokens the calculator still
    has to write."""

    def __init__(self, calculator: Calculator, rows: int):
        self.calculator = calculator
        self.open: list[str | None] = [None] * rows
        self.tail = [""] * rows  # the last character read, which may start a "<<" the next token completes
        self.pending: list[list[int]] = [[] for _ in range(rows)]

    def read(self, row: int, token: int) -> bool:
        """Read the row's next token; whether the calculator wrote it. At `<<expression=` queue the result's tokens;
        a token other than the queued one means the text went its own way, and the rest of the queue is dropped."""
        pending = self.pending[row]
        if pending and pending[0] == token:
            pending.pop(0)
            return True
        pending.clear()
        piece = self.calculator.tokenizer.decode([token])
        if self.open[row] is None:
            text = self.tail[row] + piece
            start = text.rfind(OPEN)
            self.tail[row] = text[-1:]
            if start < 0:
                return False
            self.open[row] = text[start + len(OPEN):]
        else:
            self.open[row] += piece
        expression, equals, after = self.open[row].partition(EQUALS)
        if equals and not after:  # the model asks: the calculator answers
            self.pending[row] = self.calculator.tokenizer.encode(result_text(expression))
        if equals or CLOSE in expression or len(expression) > MAX_LENGTH:  # answered, or not a call after all
            self.open[row], self.tail[row] = None, ""
        return False

    def step(self, sampled: torch.Tensor, finished: torch.Tensor) -> torch.Tensor:
        """(B,) sampled ids -> the ids the rows write: the calculator's next token where it has one, else the
        sampled one, read for calls. Rows already finished are left alone."""
        ids = sampled.tolist()
        for row, done in enumerate(finished.tolist()):
            if done:
                continue
            if self.pending[row]:
                ids[row] = self.pending[row][0]
            self.read(row, ids[row])
        return torch.tensor(ids, dtype=sampled.dtype, device=sampled.device)


class ToolText:
    """Streamed text split, as it comes, into the model's parts and the calculator's (after `=` in a call, through
    `>>`), for a terminal or a page to show them apart: `parts(piece)` gives (text, written_by_tool) pairs."""

    def __init__(self):
        self.state, self.last = "text", ""  # text, call (after <<), result (after = in a call); the last character

    def parts(self, piece: str) -> list[tuple[str, bool]]:
        parts: list[tuple[str, bool]] = []
        for ch in piece:
            tool = self.state == "result"
            if parts and parts[-1][1] == tool:
                parts[-1] = (parts[-1][0] + ch, tool)
            else:
                parts.append((ch, tool))
            closes = ch == ">" and self.last == ">"
            if self.state == "text" and ch == "<" and self.last == "<":
                self.state = "call"
            elif self.state == "call" and ch == EQUALS:
                self.state = "result"
            elif self.state != "text" and closes:
                self.state = "text"
            self.last = ch
        return parts
