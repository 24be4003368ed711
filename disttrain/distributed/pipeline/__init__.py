"""disttrain.distributed.pipeline: pipeline parallelism. Schedules are plain data (schedule.py);
the runtime executes them."""

from disttrain.distributed.pipeline.schedule import (
    Action,
    ScheduleError,
    SimulationResult,
    format_schedule,
    gpipe,
    make_schedule,
    one_f_one_b,
    simulate,
    theoretical_bubble,
)
