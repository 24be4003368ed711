"""disttrain.distributed.pipeline: pipeline parallelism. Schedules are plain data
(schedule.py); stage.py, executor.py and pipeline.py run them. Names load on first use
(disttrain.lazy), so the pure schedule code imports no MPI."""

from disttrain.lazy import attach as _attach

_FROM = {
    "disttrain.distributed.pipeline.pipeline": ("Pipeline",),
    "disttrain.distributed.pipeline.stage": ("PipelineStage",),
    "disttrain.distributed.pipeline.schedule": (
        "Action", "ScheduleError", "SimulationResult", "format_schedule", "gpipe",
        "make_schedule", "one_f_one_b", "simulate", "theoretical_bubble"),
}  # fmt: skip
_SUBMODULES = ("executor", "partition", "pipeline", "schedule", "stage")

__getattr__, __dir__, __all__ = _attach(
    __name__, _SUBMODULES, {name: module for module, names in _FROM.items() for name in names})
