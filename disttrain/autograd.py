"""Function (a graph node), grad mode and the reverse-mode engine. Imports only backend.

The engine knows tensors through the one class tensor.py registers (`register_tensor_type`), so
this module imports nothing else of disttrain and there is no import cycle.
"""

from __future__ import annotations

import functools

_Tensor = None  # disttrain.tensor.Tensor, registered by tensor.py


def register_tensor_type(cls) -> None:
    """Called once by disttrain.tensor: the class the engine wraps arrays in (hooks, .grad)."""
    global _Tensor
    _Tensor = cls


class GradMode:
    """Whether ops record graph nodes (read by every Function.apply; set by no_grad)."""

    enabled = True


def is_grad_enabled() -> bool:
    return GradMode.enabled


class _SetGradMode:
    def __init__(self, mode: bool):
        self.mode = mode

    def __enter__(self):
        self.prev, GradMode.enabled = GradMode.enabled, self.mode

    def __exit__(self, *exc):
        GradMode.enabled = self.prev

    def __call__(self, fn):  # also usable as a decorator, as torch.no_grad()
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with _SetGradMode(mode):
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_SetGradMode):
    """Context manager (or decorator) that disables graph recording, as torch.no_grad."""

    def __init__(self):
        super().__init__(False)


class enable_grad(_SetGradMode):
    """Context manager (or decorator) that re-enables graph recording inside no_grad."""

    def __init__(self):
        super().__init__(True)


class Function:
    """A graph node: subclasses implement forward(*arrays, **params) and backward(grad).

    `parents` holds, per input, the node its gradient flows to: the input's own Function, the
    input itself when it is a leaf, or None when it needs no gradient. NOTE: the graph never
    holds intermediate Tensors (as torch's grad_fn graph), so activations nobody saved are freed
    as soon as the forward pass drops them.
    """

    hooks: tuple | list = ()  # hooks registered on the (non-leaf) output tensor
    retained = None  # weakref to the output tensor when it called retain_grad()
    # NOTE: everything a backward reads goes through save(): the engine frees it (None) after
    # use unless retain_graph, so a second backward either works or raises a clear error
    saved: tuple | None = ()

    def save(self, *values) -> None:
        self.saved = values

    def forward(self, *arrays, **params):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, grad):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    @classmethod
    def apply(cls, *inputs, **params):
        ctx = cls()
        needs = ctx.needs_input_grad = tuple([t._requires_grad for t in inputs])
        out = ctx.forward(*[t.array for t in inputs], **params)
        ctx.shape = out.shape
        if GradMode.enabled and True in needs:
            ctx.parents = tuple([(t._ctx or t) if t._requires_grad else None for t in inputs])
            return _Tensor._make(out, True, ctx)
        ctx.saved = None  # NOTE: nothing will call backward; let the arrays go now
        return _Tensor._make(out)

    @property
    def name(self) -> str:
        return type(self).__name__ + "Backward"

    @property
    def next_functions(self) -> tuple:
        """torch's view of the graph: per input, (its grad_fn, 0), (AccumulateGrad, 0) for a
        leaf that requires grad, or (None, 0)."""
        return tuple((AccumulateGrad(p) if isinstance(p, _Tensor) else p, 0)
                     for p in getattr(self, "parents", ()))

    def __repr__(self) -> str:
        return f"<{self.name}>"


class AccumulateGrad:
    """Where a leaf's gradient lands, as listed by Function.next_functions (`.variable`)."""

    def __init__(self, variable) -> None:
        self.variable = variable
        self.next_functions = ()

    def __repr__(self) -> str:
        return "<AccumulateGrad>"


class RemovableHandle:
    """What register_hook returns (torch.utils.hooks.RemovableHandle): `remove()` unregisters."""

    def __init__(self, hooks: list, hook):
        self.hooks, self.hook = hooks, hook
        hooks.append(hook)

    def remove(self) -> None:
        if self.hook in self.hooks:
            self.hooks.remove(self.hook)


def _parents(node) -> tuple:
    return node.parents if isinstance(node, Function) else ()


def _toposort(root) -> list:
    """Graph nodes (Functions and leaf Tensors), each after every node it depends on. Iterative
    DFS, so a 10,000-op chain needs no recursion."""
    order, visited = [], {root}
    stack = [(root, iter(_parents(root)))]
    while stack:
        node, parents = stack[-1]
        for parent in parents:
            if parent is not None and parent not in visited:
                visited.add(parent)
                stack.append((parent, iter(_parents(parent))))
                break
        else:
            stack.pop()
            order.append(node)
    return order


class _Engine:
    callbacks: list | None = None  # callbacks queued during the running backward pass


def queue_callback(callback) -> None:
    """Runs `callback()` once the running backward pass has finished (torch's
    `Variable._execution_engine.queue_callback`); data parallelism waits for its all-reduces
    there. Only valid inside backward (from a hook)."""
    if _Engine.callbacks is None:
        raise RuntimeError("queue_callback: only valid while backward() is running (from a hook)")
    _Engine.callbacks.append(callback)


def run_backward(root, grad, retain_graph: bool) -> None:
    """Accumulates d(root)/d(leaf) into every leaf's .grad, then runs queued callbacks."""
    outer, _Engine.callbacks = _Engine.callbacks, []
    try:
        _walk_backward(root, grad, retain_graph)
        while _Engine.callbacks:
            _Engine.callbacks.pop(0)()
    finally:
        _Engine.callbacks = outer


def _walk_backward(root, grad, retain_graph: bool) -> None:
    # NOTE: nodes are dict keys by identity (Tensor.__hash__ is object.__hash__)
    start = root._ctx if root._ctx is not None else root
    grads = {start: grad}
    owned: dict[int, object] = {}  # arrays already stored as some leaf's .grad in this pass
    for node in reversed(_toposort(start)):
        grad = grads.pop(node, None)
        if grad is None:
            continue
        is_leaf = not isinstance(node, Function)
        assert grad.shape == (node.array.shape if is_leaf else node.shape), (node, grad.shape)
        for hook in (node._hooks if is_leaf else node.hooks):
            result = hook(_Tensor._make(grad))
            if result is not None:
                grad = result.array if isinstance(result, _Tensor) else result
        if is_leaf:
            _accumulate(node, grad, owned)
            continue
        retained = node.retained() if node.retained is not None else None
        if retained is not None:
            _accumulate(retained, grad, owned)
        if node.saved is None:
            raise RuntimeError("backward: trying to backward through the graph a second time; "
                               "saved arrays were freed. Pass retain_graph=True the first time")
        input_grads = node.backward(grad)
        if type(input_grads) is not tuple:
            input_grads = (input_grads,)
        if not retain_graph:
            node.saved = None
        for parent, g in zip(node.parents, input_grads):
            if g is None or parent is None:
                continue
            previous = grads.get(parent)
            grads[parent] = g if previous is None else previous + g


def _accumulate(leaf, grad, owned: dict) -> None:
    if grad.dtype != leaf.array.dtype:
        grad = grad.astype(leaf.array.dtype)
    if leaf.grad is None:
        # NOTE: a grad array may be shared (Add returns one array to both inputs) or a view of
        # memory another leaf's grad also views (split, reshape); copy those, keyed by the
        # memory's root array, so every .grad owns its memory and in-place updates stay local.
        root = grad
        while root.base is not None:
            root = root.base
        if id(root) in owned or not grad.flags.writeable:
            grad = root = grad.copy(order="K")
        owned[id(root)] = root
        leaf.grad = _Tensor._make(grad)
    else:
        leaf.grad.array += grad
    for hook in leaf._post_hooks:
        hook(leaf)
