# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py//py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Tensors, autograd and gradient descent
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tinylm-course/tinylm/blob/main/notebooks/00_tensors_and_autograd.ipynb)
#
# Every model in this course learns by gradient descent: it steps each weight against the loss's gradient. Here you
# build that machinery; if you already write PyTorch training loops, skip to notebook 1.
#
# **What you will learn**
#
# - tensors, broadcasting and the matrix product;
# - autograd by the chain rule, checked against PyTorch's;
# - gradient descent by hand and with `nn.Module` and `torch.optim.SGD`;
# - `nn.Embedding`;
# - AdamW, raced against plain gradient descent.
#
# **How long it takes**: a lesson of about 47 minutes (reading, code and the `cpu` run's 10 s, by the course's
# formula), then a second sitting of about 40 minutes for the 3 exercises (10 minutes per function, 20 per
# experiment).
#
# | profile | what it runs | time |
# |---|---|---|
# | `smoke` (CI) | 50 steps per run | the last cell prints it |
# | `cpu` (2-core laptop) | 1,000 steps per run | the last cell prints it |
# | `gpu` | as `cpu`: the model is too small for a GPU to help | not measured |
#
# **Where the ideas come from**: backpropagation, Rumelhart, Hinton & Williams
# ([1986](https://doi.org/10.1038/323533a0)); `Value` follows Karpathy's [micrograd](https://github.com/karpathy/micrograd);
# Adam, Kingma & Ba ([2014](https://arxiv.org/abs/1412.6980)); AdamW, Loshchilov & Hutter
# ([2017](https://arxiv.org/abs/1711.05101)).

# %%
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tinylm[interop,harness] @ git+https://github.com/tinylm-course/tinylm@main"], check=True)

# %% [markdown]
# ## Setup
#
# `tinylm.set_up_notebook()` reads the profile (`$TINYLM_PROFILE`, else `gpu` with CUDA, `cpu` without), which sets
# every run-time number: here the steps per run.

# %%
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

import tinylm
from tinylm.course.diagrams import draw_computation_graph
from tinylm.eval.uncertainty import compare

NOTEBOOK_STARTED = time.perf_counter()  # the last cell prints how long the whole notebook took
PROFILE, device = tinylm.set_up_notebook()
STEPS = {"smoke": 50, "cpu": 1000, "gpu": 1000}[PROFILE]  # gradient-descent steps per run
print(f"profile={PROFILE}  steps={STEPS}")

# %% [markdown]
# ## 1. Tensors
#
# A tensor is an array with a shape. Deep learning is mostly elementwise arithmetic, the **matrix product** `@` and
# **broadcasting**: a missing leading dimension, or one of size 1, is repeated to match the other operand.

# %%
# NBVAL_CHECK_OUTPUT
x = torch.arange(6.0).reshape(2, 3)  # (2, 3): 2 rows, 3 columns
w, b = torch.ones(3, 4), torch.tensor([10.0, 20.0, 30.0, 40.0])  # (3, 4) and (4,): b is broadcast over the rows
y = x @ w + b  # (2, 3) @ (3, 4) -> (2, 4), then + (4,) -> (2, 4)
print(x, x.shape, x.dtype, "\n", y, y.shape)

# %% [markdown]
# `y = x @ w + b` is a **linear layer**. Networks stack such layers with nonlinearities between, and training needs
# the loss's derivative for every weight.
#
# ## 2. A number that remembers how it was made
#
# Take L = tanh(a·b + c), with e = a·b and d = e + c. The **chain rule** multiplies local derivatives along the
# path from L back to an input: ∂L/∂a = dL/dd · ∂d/∂e · ∂e/∂a = (1 − L²) · 1 · b.
#
# Each operation then needs only its own local derivative. A `Value` stores `data`, its parents, `grad` (∂L/∂self) and
# `_backward`, which adds `grad` times that derivative into each parent's `grad`; `+=`, as a node used twice gets
# gradient from both.

# %%
class Value:
    def __init__(self, data, parents=()):
        self.data, self.grad = float(data), 0.0
        self._parents, self._backward = parents, lambda: None

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other))

        def _backward():  # ∂(a + b)/∂a = ∂(a + b)/∂b = 1
            self.grad += out.grad
            other.grad += out.grad
        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other))

        def _backward():  # ∂(a·b)/∂a = b, ∂(a·b)/∂b = a
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = _backward
        return out

    def tanh(self):
        out = Value(math.tanh(self.data), (self,))

        def _backward():  # d tanh(x)/dx = 1 − tanh(x)²
            self.grad += (1 - out.data ** 2) * out.grad
        out._backward = _backward
        return out

    __radd__, __rmul__ = __add__, __mul__  # 2 + v and 2 * v

    def backward(self):
        """Fill in ∂self/∂v for every v this value depends on: each node after every node it feeds."""
        order, seen = [], set()

        def visit(v):  # depth-first: a node joins `order` after all its parents
            if v not in seen:
                seen.add(v)
                for parent in v._parents:
                    visit(parent)
                order.append(v)
        visit(self)
        self.grad = 1.0  # ∂L/∂L
        for v in reversed(order):  # from L back to the inputs
            v._backward()


# %% [markdown]
# A node passes its gradient back only after all its users have passed theirs. **Topological order** puts each node
# after its parents; walk it backwards, so each node comes after all its users. The graph after forward and backward:

# %%
a, b, c = Value(2.0), Value(-3.0), Value(6.5)
e = a * b
d = e + c
L = d.tanh()
L.backward()
_ = draw_computation_graph({name: (v.data, v.grad) for name, v in zip("abcedL", (a, b, c, e, d, L))})

# %% [markdown]
# A gradient is a sensitivity: raising `a` by a small ε changes L by about `a.grad`·ε. Ours must match
# `torch.autograd` and (1 − L²)·b.

# %%
# NBVAL_CHECK_OUTPUT
ta, tb, tc = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (2.0, -3.0, 6.5))
torch.tanh(ta * tb + tc).backward()  # PyTorch records the same graph and walks it back
for name, ours, theirs in (("a", a, ta), ("b", b, tb), ("c", c, tc)):
    assert math.isclose(ours.grad, theirs.grad.item(), rel_tol=1e-12), name
print(f"dL/da: ours {a.grad:.6f}, torch {ta.grad.item():.6f}, (1 - L^2) * b = {(1 - L.data ** 2) * b.data:.6f}")

# %% [markdown]
# ## 3. A two-layer network, both ways
#
# Now `ŷ = w₂·tanh(w₁x + b₁) + b₂` with 4 hidden units and the mean squared error over 3 examples: about a hundred
# `Value` nodes, or one line of tensors. All 13 gradients must agree.

# %%
# NBVAL_CHECK_OUTPUT
g = torch.Generator().manual_seed(0)
W1, B1, W2, B2 = (torch.randn(shape, generator=g, dtype=torch.float64) for shape in ((4, 1), (4,), (1, 4), (1,)))
xs, ys = [-1.0, 0.5, 2.0], [0.3, -0.2, 0.9]


def value_network_loss(w1, b1, w2, b2):
    """The network's mean squared error with Values, one example and one unit at a time."""
    loss = 0
    for x_i, y_i in zip(xs, ys):
        hidden = [(w1[j] * x_i + b1[j]).tanh() for j in range(4)]
        error = sum((w2[j] * hidden[j] for j in range(4)), b2[0]) + -y_i
        loss = loss + error * error
    return loss * (1 / len(xs))


params = [[Value(v) for v in W.flatten().tolist()] for W in (W1, B1, W2, B2)]  # 4 + 4 + 4 + 1 Values
ours = value_network_loss(*params)
ours.backward()

tensors = [W.clone().requires_grad_() for W in (W1, B1, W2, B2)]
w1, b1, w2, b2 = tensors
X, Y = torch.tensor(xs, dtype=torch.float64)[:, None], torch.tensor(ys, dtype=torch.float64)[:, None]  # (3, 1)
theirs = ((torch.tanh(X @ w1.T + b1) @ w2.T + b2 - Y) ** 2).mean()  # (3, 4) hidden, (3, 1) predictions
theirs.backward()

ours_grads = torch.tensor([v.grad for p in params for v in p], dtype=torch.float64)
torch_grads = torch.cat([t.grad.flatten() for t in tensors])
assert torch.allclose(ours_grads, torch_grads, rtol=1e-10, atol=1e-12)
print(f"loss: ours {ours.data:.6f}, torch {theirs.item():.6f}; {len(ours_grads)} gradients equal to torch's")

# %% [markdown]
# From here on PyTorch computes gradients: tensors with `requires_grad=True` record their operations as `Value` did;
# `loss.backward()` fills each weight's `.grad`.
#
# ## 4. Gradient descent by hand
#
# Fit y = sin(x) on [−3, 3] from 200 noisy samples with 16 tanh units, stepping each weight by −`lr` times the
# training loss's gradient. **Train** fits the weights, **validation** picks the learning rate, **test** reports on
# data that made no choice.

# %%
g = torch.Generator().manual_seed(0)
x_all = torch.rand(400, 1, generator=g) * 6 - 3  # (400, 1): uniform on [-3, 3]
y_all = torch.sin(x_all) + 0.1 * torch.randn(400, 1, generator=g)  # noise of standard deviation 0.1
splits = {"train": (x_all[:200], y_all[:200]), "val": (x_all[200:300], y_all[200:300]),
          "test": (x_all[300:], y_all[300:])}
HIDDEN = 16


def initial_weights(seed: int) -> list[torch.Tensor]:
    """nn.Linear's initialisation (uniform in ±1/√fan_in) of w1, b1, w2, b2."""
    torch.manual_seed(seed)
    first, second = nn.Linear(1, HIDDEN), nn.Linear(HIDDEN, 1)
    return [p.detach().clone() for p in (first.weight, first.bias, second.weight, second.bias)]


def by_hand(seed: int, lr: float, steps: int = STEPS) -> tuple[list[torch.Tensor], list[float]]:
    w1, b1, w2, b2 = params = [p.requires_grad_() for p in initial_weights(seed)]
    x, y = splits["train"]
    losses = []
    for _ in range(steps):
        loss = ((torch.tanh(x @ w1.T + b1) @ w2.T + b2 - y) ** 2).mean()  # forward
        loss.backward()  # every p.grad = ∂loss/∂p
        with torch.no_grad():  # the update itself is not part of the model: do not record it
            for p in params:
                p -= lr * p.grad
                p.grad = None  # backward() adds into .grad: clear it for the next step
        losses.append(loss.item())
    return params, losses


params_by_hand, losses = by_hand(seed=0, lr=0.1)
print(f"training loss: {losses[0]:.3f} at step 0, {losses[-1]:.4f} after {STEPS} steps")

# %% [markdown]
# ## 5. The same loop, as PyTorch writes it
#
# `nn.Module` holds the weights and forward pass, `torch.optim.SGD` the update: `zero_grad`, forward, `backward`,
# `step`, every training loop in the course. From the same start it must reach the same weights.

# %%
class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden, self.out = nn.Linear(1, HIDDEN), nn.Linear(HIDDEN, 1)  # as initial_weights makes them

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1) -> (N, 1)
        return self.out(torch.tanh(self.hidden(x)))


def train(seed: int, lr: float, optimizer: str = "sgd", steps: int = STEPS) -> TinyNet:
    torch.manual_seed(seed)
    model = TinyNet()
    opt = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}[optimizer](model.parameters(), lr=lr)
    x, y = splits["train"]
    for _ in range(steps):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    return model


def split_loss(model: nn.Module, split: str) -> float:
    with torch.no_grad():
        return F.mse_loss(model(splits[split][0]), splits[split][1]).item()


model = train(seed=0, lr=0.1)
assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(model.parameters(), params_by_hand))
print(f"nn.Module + SGD lands on the by-hand weights; validation loss {split_loss(model, 'val'):.4f}")

# %% [markdown]
# ## 6. `nn.Embedding`: a table of learned vectors
#
# Text enters a model as integer ids. `nn.Embedding(V, C)` is a `(V, C)` matrix; row `i` is token `i`'s vector. A
# lookup equals a one-hot vector times the matrix, and only looked-up rows get gradient. Notebook 1's first model is
# one.

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
embedding = nn.Embedding(5, 3)  # 5 tokens, 3 numbers each
ids = torch.tensor([4, 1, 4])
looked_up = embedding(ids)  # (3,) ids -> (3, 3) vectors
assert torch.equal(looked_up, F.one_hot(ids, 5).float() @ embedding.weight)
looked_up.sum().backward()
print("rows that received gradient:", embedding.weight.grad.abs().sum(dim=1).nonzero().flatten().tolist())
print("gradient of row 4 (looked up twice):", embedding.weight.grad[4].tolist())

# %% [markdown]
# ## 7. What AdamW adds
#
# Gradient descent moves each weight by `lr` times its gradient, so weights with small gradients barely move. Adam
# keeps per-weight running averages of the gradient (m, momentum) and its square (v) and steps `lr · m̂ / (√v̂ + ε)`:
# divided by the weight's typical gradient size, so each weight moves about `lr` per step whatever its gradient's
# scale; the hats correct the averages' bias from their zero start. AdamW also multiplies each weight by (1 − `lr`·λ)
# per step (decoupled weight decay; PyTorch's default λ = 0.01, used here).
#
# Only the optimizer changes. Each gets three seeds and its **own** best rate from one grid, chosen on validation: a
# rate good for one can diverge for the other. The course's rule: **told apart** only if every seed of one beats every
# seed of the other on test.

# %%
RATES, SEEDS = (0.003, 0.01, 0.03, 0.1, 0.3), (0, 1, 2)
test_losses = {}
for optimizer in ("sgd", "adamw"):
    models = {lr: [train(seed, lr, optimizer) for seed in SEEDS] for lr in RATES}
    val = {lr: sum(split_loss(m, "val") for m in runs) / len(SEEDS) for lr, runs in models.items()}  # nan: diverged
    best = min(RATES, key=lambda lr: math.inf if math.isnan(val[lr]) else val[lr])  # chosen on validation ...
    test_losses[optimizer] = [split_loss(m, "test") for m in models[best]]  # ... reported on test
    print(f"{optimizer:5} validation loss by lr: " + "  ".join(f"{lr}: {val[lr]:.4f}" for lr in RATES)
          + f"  -> lr {best}")
print(compare("SGD", test_losses["sgd"], "AdamW", test_losses["adamw"], metric="test loss", digits=4))
print(f"sin(x) itself, the best any model can do, scores {F.mse_loss(torch.sin(splits['test'][0]), splits['test'][1]):.4f}")

# %% [markdown]
# The last line is the floor, the noise itself (in expectation; this sample of it scores 0.0091). AdamW's seeds
# average 0.0099 on test, SGD's 0.0112: in the same number of full-batch steps AdamW gets closer to the floor. One
# caveat: AdamW's best rate lies inside the grid, SGD's does not (its validation loss still falls up to 0.1, and 0.3
# diverges), so SGD's rate is only the largest stable one here, tuned more coarsely than AdamW's. Notebook 3a adds a
# learning-rate schedule and gradient clipping.
#
# ## What you learned
#
# - `@` and broadcasting make a linear layer; backward applies the chain rule in reverse topological order.
# - A training loop is forward, backward, step; `nn.Embedding` is a learned lookup table.
# - AdamW adds momentum, per-weight step sizes and weight decay. Race optimizers each at its own validation-chosen
#   rate, judged on test.
#
# ## Exercises
#
# Each exercise is a function to complete. Replace `raise NotImplementedError`, then run the cell after it:
# `check` reports *correct*, an assertion that says what is wrong, or *not attempted yet*.
#
# ### Exercise 1: ReLU for `Value`
#
# Write `relu(v)`: a new `Value` holding max(0, v.data), made from `v`, whose `_backward` passes the gradient
# through where the input was positive and blocks it elsewhere.

# %%
from tinylm.course.exercises import check


def relu(v: Value) -> Value:
    raise NotImplementedError


# %%
def test_relu():
    for x in (-1.5, 0.7):
        a = Value(x)
        out = relu(a * 2.0) * 3.0
        out.backward()
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        (torch.relu(t * 2.0) * 3.0).backward()
        assert math.isclose(out.data, max(0.0, 2 * x) * 3.0), f"relu({2 * x}) should be {max(0.0, 2 * x)}"
        assert math.isclose(a.grad, t.grad.item()), f"at x = {x}: gradient {a.grad}, torch says {t.grad.item()}"


check(test_relu)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def relu(v):
#     out = Value(max(0.0, v.data), (v,))
#
#     def _backward():
#         v.grad += (v.data > 0) * out.grad
#     out._backward = _backward
#     return out
# ```
# </details>
#
# ### Exercise 2: a numerical gradient
#
# Before autograd, gradients were checked by finite differences, and it is still how one tests a hand-written
# backward. Return the gradient of the scalar function `f` at `x` (a float64 tensor of any shape) by **central**
# differences, (f(x + ε·eᵢ) − f(x − ε·eᵢ)) / 2ε for each entry i. Its error shrinks like ε², the one-sided
# difference's only like ε: the check uses ε = 10⁻³ and tells them apart.

# %%
def numerical_gradient(f, x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    raise NotImplementedError


# %%
def test_numerical_gradient():
    def f(t):
        return (torch.tanh(t) ** 3).sum() + t.prod()

    x = torch.tensor([[0.3, -1.2], [2.0, 0.5]], dtype=torch.float64, requires_grad=True)
    f(x).backward()
    got = numerical_gradient(f, x.detach().clone(), eps=1e-3)
    assert got.shape == x.shape, f"one partial derivative per entry: shape {tuple(x.shape)}, got {tuple(got.shape)}"
    error = (got - x.grad).abs().max().item()
    print(f"largest difference from autograd: {error:.1e}")
    assert error < 1e-5, "too far from autograd: use central differences, f(x + eps) - f(x - eps) over 2 eps"


check(test_numerical_gradient)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def numerical_gradient(f, x, eps=1e-3):
#     grad = torch.zeros_like(x)
#     for i in range(x.numel()):
#         step = torch.zeros_like(x)
#         step.view(-1)[i] = eps  # entry i alone moves
#         grad.view(-1)[i] = (f(x + step) - f(x - step)) / (2 * eps)
#     return grad
# ```
# </details>
#
# ### Exercise 3: an experiment — the largest learning rate gradient descent survives
#
# For least squares, L(w) = mean((Xw − y)²), the curvature is the same everywhere: the Hessian H = 2XᵀX/n. Along
# H's eigenvector with eigenvalue λ, one step of gradient descent multiplies the distance to the optimum by
# (1 − lr·λ). So the loss converges when lr < 2/λ_max and blows up above it.
#
# Write `final_loss(X, y, lr, steps)`: gradient descent from w = 0 with `loss.backward()`, returning the last
# loss. The check computes λ_max and runs your loop for 200 steps a tenth below and a tenth above the threshold.
# **Predict first**: above it, how many times the starting loss will the final loss be?

# %%
def final_loss(X: torch.Tensor, y: torch.Tensor, lr: float, steps: int) -> float:
    raise NotImplementedError


# %%
def test_final_loss():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(100, 5, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1, 1, 1, 0.5], dtype=torch.float64)
    y = X @ torch.randn(5, generator=g, dtype=torch.float64) + 0.1 * torch.randn(100, generator=g, dtype=torch.float64)
    lambda_max = torch.linalg.eigvalsh(2 * X.T @ X / len(X)).max().item()
    start = (y ** 2).mean().item()  # the loss at w = 0
    below, above = (final_loss(X, y, factor * 2 / lambda_max, 200) for factor in (0.9, 1.1))
    print(f"2/lambda_max = {2 / lambda_max:.4f}; final loss / starting loss: at 0.9x {below / start:.2e}, "
          f"at 1.1x {above / start:.2e}")
    assert below < 0.01 * start, "below the threshold gradient descent should converge: is the step lr * grad?"
    assert above > start, "above the threshold the loss should grow: did you clip, or stop early?"


check(test_final_loss)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def final_loss(X, y, lr, steps):
#     w = torch.zeros(X.shape[1], dtype=X.dtype, requires_grad=True)
#     for _ in range(steps):
#         loss = ((X @ w - y) ** 2).mean()
#         loss.backward()
#         with torch.no_grad():
#             w -= lr * w.grad
#             w.grad = None
#     return ((X @ w - y) ** 2).mean().item()
# ```
#
# Above the threshold the error along the sharpest direction is multiplied by |1 − lr·λ_max| > 1 at every step, and
# the loss by its square: it grows geometrically. A tenth above the threshold,
# $|1 - \mathrm{lr}\cdot\lambda_{max}| = 1.2$, so in 200 steps the loss's share along that direction grows
# $1.2^{400}$-fold, some thirty orders of magnitude, as the check's line shows. A network's loss is not a quadratic,
# but near a point it behaves like one: a rate too large for the sharpest direction diverges (SGD at the grid's
# largest rate in section 7), one reason notebook 3a warms the rate up and clips gradients.
# </details>

# %%
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_STARTED:.0f} s")
