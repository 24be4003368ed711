"""L-BFGS, as torch.optim.LBFGS (flat numpy/cupy vectors over all parameters)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from disttrain.backend import get_array_module
from disttrain.optim.line_search import strong_wolfe
from disttrain.optim.optimizer import Optimizer
from disttrain.tensor import Tensor, enable_grad


class LBFGS(Optimizer):
    """L-BFGS, PyTorch's `torch.optim.LBFGS`: up to `max_iter` quasi-Newton iterations per
    `step(closure)`, with the inverse Hessian approximated from the last `history_size` steps.

    As in torch: one parameter group only, `step` needs a closure that clears the gradients,
    computes the loss, calls `backward()` and returns the loss, and the whole state lives in
    `state[first parameter]` (so `state_dict()` round-trips it).

    Args:
        params: iterable of Parameters (one group).
        lr: learning rate (the step length along the search direction).
        max_iter: maximal number of iterations per `step`.
        max_eval: maximal number of closure evaluations per `step` (default max_iter * 5 // 4).
        tolerance_grad: stop when the largest gradient entry is at most this.
        tolerance_change: stop when the loss or the parameters change less than this.
        history_size: number of past updates kept.
        line_search_fn: None (fixed step `lr`) or "strong_wolfe".

    Example:
        >>> w = nn.Parameter(dt.tensor([1.0, -2.0]))
        >>> opt = optim.LBFGS([w], line_search_fn="strong_wolfe")
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = ((w - 3.0) ** 2).sum()
        ...     loss.backward()
        ...     return loss
        >>> _ = opt.step(closure)
        >>> [round(x, 4) for x in w.tolist()]
        [3.0, 3.0]
    """

    _array_state = True

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1,
                 max_iter: int = 20, max_eval: int | None = None, tolerance_grad: float = 1e-7,
                 tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError("LBFGS: line_search_fn must be None or 'strong_wolfe' (only "
                             f"'strong_wolfe' is supported), got {line_search_fn!r}")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval,
                        tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                        history_size=history_size, line_search_fn=line_search_fn)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params = self.param_groups[0]["params"]

    def _gather_flat_grad(self):
        xp = get_array_module(self._params[0].array)
        return xp.concatenate([
            xp.zeros(p.array.size, p.dtype) if p.grad is None else p.grad.array.ravel()
            for p in self._params
        ])

    def _add_grad(self, step_size, update) -> None:
        offset = 0
        for p in self._params:
            size = p.array.size
            p.array += step_size * update[offset : offset + size].reshape(p.shape)
            offset += size

    def _directional_evaluate(self, closure, x, t, d):
        self._add_grad(t, d)
        loss = float(closure())
        flat_grad = self._gather_flat_grad()
        for p, saved in zip(self._params, x, strict=True):
            p.array[...] = saved
        return loss, flat_grad

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Run up to `max_iter` L-BFGS iterations; returns the loss of the first evaluation.

        Args:
            closure: a callable that clears the gradients, computes the loss, calls
                `backward()` on it and returns it (required).
        """
        if closure is None:
            raise TypeError("LBFGS.step() needs a closure that re-evaluates the model and "
                            "returns the loss: def closure(): optimizer.zero_grad(); loss = ...; "
                            "loss.backward(); return loss, then optimizer.step(closure)")
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups): "
                             f"it has {len(self.param_groups)} groups")
        closure = enable_grad()(closure)  # NOTE: every evaluation records a graph, as torch
        group, state = self.param_groups[0], self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        orig_loss = closure()
        state["func_evals"] += 1
        flat_grad = self._gather_flat_grad()
        if abs(flat_grad).max() <= group["tolerance_grad"]:
            return orig_loss
        _Run(self, closure, group, state).iterate(float(orig_loss), flat_grad)
        return orig_loss


class _Run:
    """The iterations of one `LBFGS.step`, on the state torch keeps (same names)."""

    def __init__(self, opt: LBFGS, closure: Callable, group: dict, state: dict):
        self.opt, self.closure, self.group, self.state = opt, closure, group, state
        self.evals = 1
        for name in ("d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad",
                     "prev_loss"):
            setattr(self, name, state.get(name))

    def iterate(self, loss: float, flat_grad) -> None:
        group, state = self.group, self.state
        for n_iter in range(1, group["max_iter"] + 1):
            state["n_iter"] += 1
            self.direction(flat_grad)
            if self.prev_flat_grad is None:
                self.prev_flat_grad = flat_grad.copy()
            else:
                self.prev_flat_grad[...] = flat_grad
            self.prev_loss = loss
            self.t = group["lr"]
            if state["n_iter"] == 1:
                self.t = min(1.0, 1.0 / abs(flat_grad).sum()) * group["lr"]
            gtd = flat_grad.dot(self.d)
            if gtd > -group["tolerance_change"]:
                break
            loss, flat_grad, opt_cond, evals = self.move(loss, flat_grad, gtd, n_iter)
            self.evals += evals
            state["func_evals"] += evals
            if n_iter == group["max_iter"] or self.evals >= group["max_eval"] or opt_cond:
                break
            if abs(self.d * self.t).max() <= group["tolerance_change"]:
                break
            if abs(loss - self.prev_loss) < group["tolerance_change"]:
                break
        for name in ("d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad",
                     "prev_loss"):
            state[name] = getattr(self, name)

    def direction(self, flat_grad) -> None:
        """The search direction d: -H grad by the two-loop recursion over the history."""
        if self.state["n_iter"] == 1:
            self.d, self.old_dirs, self.old_stps, self.ro, self.H_diag = -flat_grad, [], [], [], 1
            return
        self.remember(flat_grad - self.prev_flat_grad, self.d * self.t)
        history = self.group["history_size"]
        if "al" not in self.state:
            self.state["al"] = [None] * history
        al, old_dirs, old_stps, ro = self.state["al"], self.old_dirs, self.old_stps, self.ro
        q = -flat_grad
        for i in range(len(old_dirs) - 1, -1, -1):
            al[i] = old_stps[i].dot(q) * ro[i]
            q += -al[i] * old_dirs[i]
        self.d = r = q * self.H_diag
        for i in range(len(old_dirs)):
            be_i = old_dirs[i].dot(r) * ro[i]
            r += (al[i] - be_i) * old_stps[i]

    def remember(self, y, s) -> None:
        """Add the curvature pair (y, s) to the history when y.s is large enough."""
        ys = y.dot(s)
        if ys > 1e-10:
            if len(self.old_dirs) == self.group["history_size"]:
                self.old_dirs.pop(0)
                self.old_stps.pop(0)
                self.ro.pop(0)
            self.old_dirs.append(y)
            self.old_stps.append(s)
            self.ro.append(1.0 / ys)
            self.H_diag = ys / y.dot(y)

    def move(self, loss, flat_grad, gtd, n_iter: int):
        """Step along d (line search or fixed): (loss, flat grad, optimal?, evaluations)."""
        opt, group, evals = self.opt, self.group, 0
        opt_cond = False
        if group["line_search_fn"] is not None:
            x_init = [p.array.copy() for p in opt._params]

            def obj_func(x, t, d):
                return opt._directional_evaluate(self.closure, x, t, d)

            loss, flat_grad, self.t, evals = strong_wolfe(
                obj_func, x_init, self.t, self.d, loss, flat_grad, gtd,
                max_ls=group["max_eval"] - self.evals)
            opt._add_grad(self.t, self.d)
            opt_cond = abs(flat_grad).max() <= group["tolerance_grad"]
        else:
            opt._add_grad(self.t, self.d)
            if n_iter != group["max_iter"]:
                loss = float(self.closure())
                flat_grad = opt._gather_flat_grad()
                opt_cond = abs(flat_grad).max() <= group["tolerance_grad"]
                evals = 1
        return loss, flat_grad, opt_cond, evals
