"""Notebook 00: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # passes the gradient through everywhere, as if relu were the identity
    "test_relu": """
def relu(v):
    out = Value(max(0.0, v.data), (v,))

    def _backward():
        v.grad += out.grad
    out._backward = _backward
    return out
""",
    # the one-sided difference: its error shrinks only like eps
    "test_numerical_gradient": """
def numerical_gradient(f, x, eps=1e-3):
    grad = torch.zeros_like(x)
    for i in range(x.numel()):
        step = torch.zeros_like(x)
        step.view(-1)[i] = eps
        grad.view(-1)[i] = (f(x + step) - f(x)) / eps
    return grad
""",
    # half the step: the threshold doubles, so 1.1 times the true one still converges
    "test_final_loss": """
def final_loss(X, y, lr, steps):
    w = torch.zeros(X.shape[1], dtype=X.dtype, requires_grad=True)
    for _ in range(steps):
        loss = ((X @ w - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad / 2
            w.grad = None
    return ((X @ w - y) ** 2).mean().item()
""",
}
