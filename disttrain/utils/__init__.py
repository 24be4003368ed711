"""`disttrain.utils`: torch.utils's module paths (`disttrain.utils.data`), so scripts port by
changing their imports."""

from disttrain.lazy import attach as _attach

__getattr__, __dir__, __all__ = _attach(__name__, ("data",), {})
