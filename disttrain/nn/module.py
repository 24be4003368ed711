"""Module, Parameter, buffers and state_dict, with torch.nn.Module's names and semantics."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy

from disttrain import backend
from disttrain.tensor import Tensor, no_grad


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable (requires_grad=True by default).

    Args:
        data: a Tensor (storage is shared) or an array.
        requires_grad: whether the optimizer should train it.
    """

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            data = numpy.empty(0, numpy.float32)
        array = data.array if isinstance(data, Tensor) else data
        if not hasattr(array, "dtype"):
            array = numpy.asarray(array, dtype=numpy.float32)
        super().__init__(array, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer and model: parameters, buffers and sub-modules registered on
    assignment, in definition order (the same order on every rank).

    Example:
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc = nn.Linear(4, 2)
        ...     def forward(self, x):
        ...         return self.fc(x)
        >>> list(Net().state_dict())
        ['fc.weight', 'fc.bias']
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", [])
        object.__setattr__(self, "_forward_pre_hooks", [])
        object.__setattr__(self, "training", True)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"Module [{type(self).__name__}] is missing the required "
                                  "\"forward\" function")

    def __call__(self, *args, **kwargs):
        for hook in self._forward_pre_hooks:
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        out = self.forward(*args, **kwargs)
        for hook in self._forward_hooks:
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    def register_forward_hook(self, hook):
        from disttrain.autograd import RemovableHandle
        return RemovableHandle(self._forward_hooks, hook)

    def register_forward_pre_hook(self, hook):
        from disttrain.autograd import RemovableHandle
        return RemovableHandle(self._forward_pre_hooks, hook)

    # ---------------------------------------------------------------- registration
    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() call")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter) or (name in params and value is None):
            self.__dict__.pop(name, None)
            buffers.pop(name, None), modules.pop(name, None)
            params[name] = value
        elif name in params:
            raise TypeError(f"cannot assign {type(value).__name__} as parameter '{name}' "
                            "(disttrain.nn.Parameter or None expected)")
        elif isinstance(value, Module):
            self.__dict__.pop(name, None)
            buffers.pop(name, None)
            modules[name] = value
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer '{name}' "
                                "(a Tensor or None expected)")
            buffers[name] = value
        else:
            modules.pop(name, None)
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        for table in ("_parameters", "_buffers", "_modules"):
            items = self.__dict__.get(table)
            if items is not None and name in items:
                return items[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: cannot assign {type(param).__name__} as "
                            f"parameter '{name}' (disttrain.nn.Parameter or None expected)")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = Tensor(tensor)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {type(module).__name__} is not a Module subclass")
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> Module:
        module = self
        for part in target.split(".") if target else []:
            if part not in module._modules:
                raise AttributeError(f"get_submodule: {type(module).__name__} has no "
                                     f"sub-module '{part}' (in '{target}')")
            module = module._modules[part]
        return module

    # ---------------------------------------------------------------- traversal
    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True):
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        if remove_duplicate:
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, f"{prefix}.{name}" if prefix else name,
                                                remove_duplicate)

    def modules(self):
        return (module for _, module in self.named_modules())

    def named_children(self):
        return ((name, m) for name, m in self._modules.items() if m is not None)

    def children(self):
        return (m for _, m in self.named_children())

    def _named_members(self, table: str, prefix: str, recurse: bool):
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, table).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))  # NOTE: shared parameters appear once, as in torch
                yield (f"{module_prefix}.{name}" if module_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        return self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        return self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True):
        return (b for _, b in self.named_buffers(recurse=recurse))

    # ---------------------------------------------------------------- modes and devices
    def train(self, mode: bool = True) -> Module:
        if not isinstance(mode, bool):
            raise ValueError(f"train: mode is expected to be boolean, got {mode!r}")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.array[...] = 0

    def apply(self, fn) -> Module:
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    def to(self, device=None, dtype=None, non_blocking: bool = False) -> Module:
        """Moves (in place) every parameter and buffer to `device` and/or float `dtype`.

        As torch: `m.to(device)` (a str, dt.device or int GPU index), `m.to(dtype)`,
        `m.to(device, dtype)`, `m.to(tensor)` (its device and dtype); `non_blocking` is
        accepted (copies here are synchronous)."""
        if isinstance(device, Tensor):
            device, dtype = device.device, device.dtype
        elif device is not None and not isinstance(device, (str, int)):  # m.to(dt.float64)
            device, dtype = None, device
        if device is not None:
            device = backend.parse_device(device)
        for t in list(self.parameters()) + list(self.buffers()):
            array = t.array
            if dtype is not None and array.dtype.kind == "f":
                array = array.astype(dtype)
            if device is not None:
                array = backend.to_device(array, device)
            t.array = array
            if t.grad is not None:
                t.grad = t.grad.to(device or t.grad.device, dtype or t.grad.dtype)
        return self

    def share_memory(self) -> Module:
        """Moves every parameter, buffer and existing gradient to shared memory (in place),
        so that processes forked afterwards (dt.multiprocessing with start_method="fork", or
        multiprocessing's fork start) train the same weights, Hogwild-style: their in-place
        updates (optimizer steps) show in this process and each other's. GPU tensors stay as
        they are. A "spawn"/"forkserver" process would receive copies instead, so
        multiprocessing's pickler (and dt.multiprocessing.spawn) refuses to send them there.

        Example:
            >>> model = nn.Linear(4, 2).share_memory()
            >>> model.weight.is_shared()
            True
        """
        for t in [*self.parameters(), *self.buffers()]:
            t.share_memory_()
            if t.grad is not None:
                t.grad.share_memory_()
        return self

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self, device: int | None = None) -> Module:
        return self.to("cuda" if device is None else f"cuda:{device}")

    def float(self) -> Module:
        return self.to(dtype=numpy.float32)

    def double(self) -> Module:
        return self.to(dtype=numpy.float64)

    # ---------------------------------------------------------------- state
    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> dict:
        """{dotted.name: numpy array} of parameters and persistent buffers (host copies)."""
        out = OrderedDict()
        # NOTE: a module shared under two names is saved under both, as torch's state_dict does
        modules = self.named_modules(prefix=prefix.rstrip("."), remove_duplicate=False)
        for module_prefix, module in modules:
            for table in ("_parameters", "_buffers"):
                for name, value in getattr(module, table).items():
                    if value is None or (table == "_buffers" and name in module._non_persistent):
                        continue
                    key = f"{module_prefix}.{name}" if module_prefix else name
                    out[key] = value if keep_vars else backend.asnumpy(value.array).copy()
        return out

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copies arrays (or Tensors) into parameters and buffers; raises once, listing every
        missing key, unexpected key and size mismatch, in torch's format."""
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict:  # NOTE: torch's order: missing, unexpected, then size mismatches
            if missing:
                errors.append("Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ".")
            if unexpected:
                errors.append("Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ".")
        updates = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            value = value.array if isinstance(value, Tensor) else value
            if tuple(value.shape) != target.shape:
                errors.append(f"size mismatch for {key}: copying a param with shape "
                              f"{tuple(value.shape)} from checkpoint, the shape in current model "
                              f"is {target.shape}.")
                continue
            updates.append((target, value))
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(errors))
        with no_grad():
            for target, value in updates:
                xp = backend.get_array_module(target.array)
                target.array[...] = xp.asarray(value, dtype=target.array.dtype)
        return IncompatibleKeys(missing, unexpected)

    # ---------------------------------------------------------------- printing
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ")
                 for name, m in self._modules.items()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        body = "\n  ".join(([extra] if extra else []) + lines)
        return f"{type(self).__name__}(\n  {body}\n)"

    def __dir__(self):
        return list(super().__dir__()) + list(self._parameters) + list(self._modules) + list(
            self._buffers)
