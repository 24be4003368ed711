"""The strong-Wolfe line search of torch.optim.LBFGS, on flat arrays (numpy or cupy).

A port of torch.optim.lbfgs._strong_wolfe (itself from minFunc), branch for branch, so that
LBFGS(line_search_fn="strong_wolfe") follows torch's trajectory.
"""

from __future__ import annotations

from collections.abc import Callable


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clipped to `bounds`
    (default: the interval between x1 and x2); the interval's middle if the cubic has none."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = d2_square**0.5
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


class _StrongWolfe:
    """One search along direction d from x (loss f, gradient g, slope gtd = g.d)."""

    def __init__(self, obj_func: Callable, x, d, f, gtd, c1: float, c2: float):
        self.obj_func, self.x, self.d, self.f, self.gtd = obj_func, x, d, f, gtd
        self.c1, self.c2, self.evals, self.iters = c1, c2, 0, 0

    def evaluate(self, t):
        """(loss, flat gradient, slope) at x + t d."""
        f_new, g_new = self.obj_func(self.x, t, self.d)
        self.evals += 1
        return f_new, g_new, g_new.dot(self.d)

    def armijo_fails(self, t, f_new) -> bool:
        return f_new > (self.f + self.c1 * t * self.gtd)

    def curvature_holds(self, gtd_new) -> bool:
        return abs(gtd_new) <= -self.c2 * self.gtd

    def bracket(self, t, g, max_ls: int):
        """Expand the step until an interval holds a point satisfying the conditions.

        Returns (bracket, bracket_f, bracket_g, bracket_gtd, done, (t, f_new, g_new))."""
        f_new, g_new, gtd_new = self.evaluate(t)
        t_prev, f_prev, g_prev, gtd_prev = 0, self.f, g, self.gtd
        while self.iters < max_ls:
            if self.armijo_fails(t, f_new) or (self.iters > 1 and f_new >= f_prev):
                return [t_prev, t], [f_prev, f_new], [g_prev, g_new.copy()], \
                    [gtd_prev, gtd_new], False, None
            if self.curvature_holds(gtd_new):
                return [t], [f_new], [g_new], None, True, None
            if gtd_new >= 0:
                return [t_prev, t], [f_prev, f_new], [g_prev, g_new.copy()], \
                    [gtd_prev, gtd_new], False, None
            bounds = (t + 0.01 * (t - t_prev), t * 10)
            t_prev, t = t, cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds)
            f_prev, g_prev, gtd_prev = f_new, g_new.copy(), gtd_new
            f_new, g_new, gtd_new = self.evaluate(t)
            self.iters += 1
        return None, None, None, None, False, (t, f_new, g_new)

    def zoom_step(self, bracket, bracket_f, bracket_gtd, insuf_progress: bool):
        """The next trial step inside the bracket, and the updated insufficient-progress flag."""
        t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0],
                              bracket[1], bracket_f[1], bracket_gtd[1])
        high, low = max(bracket), min(bracket)
        eps = 0.1 * (high - low)
        if min(high - t, t - low) < eps:  # NOTE: too close to a bound: move eps inside
            if insuf_progress or t >= high or t <= low:
                t = high - eps if abs(t - high) < abs(t - low) else low + eps
                return t, False
            return t, True
        return t, False


def strong_wolfe(obj_func: Callable, x, t, d, f, g, gtd, c1: float = 1e-4, c2: float = 0.9,
                 tolerance_change: float = 1e-9, max_ls: int = 25):
    """torch's `_strong_wolfe`: a step t along d satisfying the strong Wolfe conditions.

    Args:
        obj_func: `obj_func(x, t, d) -> (loss, flat gradient)` at x + t d (x left unchanged).
        x: the starting point, passed through to `obj_func`.
        t: the first trial step.
        d: the search direction (flat array); f, g, gtd: loss, flat gradient and g.d at x.
        c1, c2: the sufficient-decrease and curvature constants.
        tolerance_change: stop once the bracket is shorter than this (scaled by max |d|).
        max_ls: the most evaluations of `obj_func` after the first.

    Returns:
        (loss, flat gradient, t, number of evaluations), at the accepted step.

    Example:
        >>> import numpy
        >>> quadratic = lambda x, t, d: (float(((x + t * d) ** 2).sum()), 2 * (x + t * d))
        >>> x = numpy.array([1.0]); g = 2 * x
        >>> float(strong_wolfe(quadratic, x, 1.0, -g, 1.0, g, g.dot(-g))[2])
        0.5
    """
    search = _StrongWolfe(obj_func, x, d, f, gtd, c1, c2)
    d_norm = abs(d).max()
    bracket, bracket_f, bracket_g, bracket_gtd, done, last = search.bracket(t, g.copy(), max_ls)
    if search.iters == max_ls:
        t, f_new, g_new = last
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]
    insuf_progress = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and search.iters < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t, insuf_progress = search.zoom_step(bracket, bracket_f, bracket_gtd, insuf_progress)
        f_new, g_new, gtd_new = search.evaluate(t)
        search.iters += 1
        if search.armijo_fails(t, f_new) or f_new >= bracket_f[low]:
            bracket[high], bracket_f[high] = t, f_new
            bracket_g[high], bracket_gtd[high] = g_new.copy(), gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
            continue
        if search.curvature_holds(gtd_new):
            done = True
        elif gtd_new * (bracket[high] - bracket[low]) >= 0:
            bracket[high], bracket_f[high] = bracket[low], bracket_f[low]
            bracket_g[high], bracket_gtd[high] = bracket_g[low], bracket_gtd[low]
        bracket[low], bracket_f[low] = t, f_new
        bracket_g[low], bracket_gtd[low] = g_new.copy(), gtd_new
    return bracket_f[low], bracket_g[low], bracket[low], search.evals
